#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/x509.h>

#include "jose_fixture.h"
#include "jwt.h"

/*
 * Test vectors: made with python3 (hmac, hashlib, base64; compact JSON separators) and checked
 * against `openssl dgst -sha256 -hmac`. The comment above each gives its header . payload and the
 * key it is signed with. "now" is NOW unless said otherwise: before every exp, and after every nbf
 * but those of VALID_64 and NBF, whose tests pick their own now.
 */
static const unsigned char S32[] = "cartshard-unit-test-secret-32-by";
static const unsigned char S64[] = "cartshard-unit-test-secret-64-bytes-long-enough-for-hs512-too!!!";
static const unsigned char OTHER[] = "another-secret-of-thirty-two-byt";
#define S32_LEN (sizeof S32 - 1)
#define S64_LEN (sizeof S64 - 1)
#define S31_LEN (S32_LEN - 1) /* S31 is S32 without its last byte */

#define EXP 2000000000
#define NOW 1900000000

/* {"alg":"HS256","typ":"JWT"} . {"sub":"u1","exp":2000000000} , S32 */
#define VALID                                                                                                          \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0."                                    \
    "b6rcXfqrOufAQ6Ew6mAyBbqyYdzREa0XQFQA3LQtAq8"
/* {"alg":"HS256","typ":"JWT"} . {"sub":"user-64.key:x_y","exp":2000000000,"iat":1999996400,"nbf":1999996400} , S64 */
#define VALID_64                                                                                                       \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                                            \
    "eyJzdWIiOiJ1c2VyLTY0LmtleTp4X3kiLCJleHAiOjIwMDAwMDAwMDAsImlhdCI6MTk5OTk5NjQwMCwibmJmIjoxOTk5OTk2NDAwfQ."          \
    "g1S0nF9szIzVf5lum_HX_jytC-W8Rf-NdVqIj17CB6o"
/* {"alg":"HS256"} . {"sub":"u1","exp":2000000000,"iss":"auth","aud":["cart"],"ctx":{"a":[1,{"b":null}]}} , S32 */
#define VALID_NOTYP                                                                                                    \
    "eyJhbGciOiJIUzI1NiJ9."                                                                                            \
    "eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMCwiaXNzIjoiYXV0aCIsImF1ZCI6WyJjYXJ0Il0sImN0eCI6eyJhIjpbMSx7ImIiOm51bGx9XX19" \
    ".1aKZlBBqF2DSuePzqGpcgSvE-maujbqVLm4tPztMrIc"
/* {"alg":"HS256","typ":"jwt","kid":"k1"} . {"sub":"u1","exp":2000000000} , S32 */
#define VALID_TYP_LOWER                                                                                                \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6Imp3dCIsImtpZCI6ImsxIn0.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0."                     \
    "8IyRjoXAPz7Q8lOTOCVcscFZxXEq4M_qhkCxwOr0Q38"
/* {"alg":"HS256","typ":"JWT"} . {"sub":"a" x 64,"exp":2000000000} , S32 */
#define SUB_64                                                                                                         \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                                            \
    "eyJzdWIiOiJhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhIiwiZXhwIjoyMDAw" \
    "MDAwMDAwfQ.IE_bMcSJ5zRbnaJ5VSwmXYf4eU1UN8KklSjlhgmLPNI"
/* {"alg":"HS256","typ":"JWT"} . {"sub":"a" x 65,"exp":2000000000} , S32 */
#define SUB_65                                                                                                         \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                                            \
    "eyJzdWIiOiJhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYSIsImV4cCI6MjAw" \
    "MDAwMDAwMH0.KTVouMLQUqlPeI-H610iIF_R36mljFo1go-cDPit29U"
/* VALID with bit 0 of the first signature byte flipped */
#define FLIPPED_SIG                                                                                                    \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0."                                    \
    "bqrcXfqrOufAQ6Ew6mAyBbqyYdzREa0XQFQA3LQtAq8"
/* VALID with the top bit of the last signature byte flipped */
#define FLIPPED_SIG_LAST                                                                                               \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0."                                    \
    "b6rcXfqrOufAQ6Ew6mAyBbqyYdzREa0XQFQA3LQtAi8"
/* {"alg":"HS256","typ":"JWT"} . {"sub":"u1","exp":2000000000} , OTHER */
#define OTHER_SECRET                                                                                                   \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0."                                    \
    "xBLHnHSP2PgoeWdA02jMj4lQWEBMOBz0dWTmGAUxuzU"
/* VALID's header and signature around the payload {"sub":"u2","exp":2000000000} */
#define SWAPPED_SUB                                                                                                    \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MiIsImV4cCI6MjAwMDAwMDAwMH0."                                    \
    "b6rcXfqrOufAQ6Ew6mAyBbqyYdzREa0XQFQA3LQtAq8"
/* VALID with a zero byte appended to the signature */
#define SIG_33                                                                                                         \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0."                                    \
    "b6rcXfqrOufAQ6Ew6mAyBbqyYdzREa0XQFQA3LQtAq8A"
/* VALID without its signature */
#define SIG_EMPTY "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0."
/* {"alg":"HS256","typ":"JWT"} . {"sub":"u1","exp":2000000000} , S31 */
#define SIGNED_S31                                                                                                     \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0.mononY9bKMGwNCnsCKY6vOY_"            \
    "8w2mEv3mEBkgMbbafmw"
/* {"alg":"none","typ":"JWT"} . {"sub":"u1","exp":2000000000} , unsigned */
#define ALG_NONE "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0."
/* {"alg":"none"} . {"sub":"u1","exp":2000000000} , S32 */
#define ALG_NONE_SIGNED                                                                                                \
    "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0.5kGUx1tpSOo6oi-t_KZHaF2OJjg_IrE80YcBGJGHEhM"
/* {"alg":"HS512","typ":"JWT"} . {"sub":"u1","exp":2000000000} , HMAC-SHA512 S64 */
#define ALG_HS512                                                                                                      \
    "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0.6sJfibv1Q7VjeMM7mKxxM--"             \
    "YJIu8uKr0dILnFa889FqgNdBh4y6UBj9ALghK-hYBjSwZxAim_pcJNPZi91tPJg"
/* {"alg":"RS256","typ":"JWT"} . {"sub":"u1","exp":2000000000} , S32 */
#define ALG_RS256                                                                                                      \
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0.1E4hBBQOz6CqNGR1YsPr8jLw-"           \
    "MONqj9QLFj-ykdt5U8"
/* {"alg":"hs256","typ":"JWT"} . {"sub":"u1","exp":2000000000} , S32 */
#define ALG_LOWER                                                                                                      \
    "eyJhbGciOiJoczI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0.6tMEFkyC_"                           \
    "i2My9vi9Wd9UdFHUNPrwzSbT5MknDMFxSU"
/* {"typ":"JWT"} . {"sub":"u1","exp":2000000000} , S32 */
#define ALG_MISSING                                                                                                    \
    "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0.FLp7bgeDGLxEZ2KG-bj7Bn4uZQxrWxp3FkOV0E1-FMI"
/* {"alg":256} . {"sub":"u1","exp":2000000000} , S32 */
#define ALG_NUMBER "eyJhbGciOjI1Nn0.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0.JXgGdaeJXRoNjl9TeiMA5n6DGCsPyMibbQrojFBez_k"
/* {"alg":"HS256 "} . {"sub":"u1","exp":2000000000} , S32 */
#define ALG_SPACE                                                                                                      \
    "eyJhbGciOiJIUzI1NiAifQ.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0.bSXuTotE6fX-znaUIvxE3DfYA2K0uAXAaSLjVXzu4Pw"
/* {"alg":"HS256\u0000"} . {"sub":"u1","exp":2000000000} , S32 */
#define ALG_NUL                                                                                                        \
    "eyJhbGciOiJIUzI1Nlx1MDAwMCJ9.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0.2b1pxIPRKW3gp5Ml5r9Iso9V9bkxEqAs5T_Fash4Bok"
/* {"alg":"HS256","typ":"JOSE"} . {"sub":"u1","exp":2000000000} , S32 */
#define TYP_JOSE                                                                                                       \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpPU0UifQ.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0.nmmY0EPlvWirwhKGKcTgF-"            \
    "GZhwWKohqIn6A8qFW7wKc"
/* {"alg":"HS256","typ":1} . {"sub":"u1","exp":2000000000} , S32 */
#define TYP_NUMBER                                                                                                     \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6MX0.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0."                                         \
    "2zSshoFwelrG9yggjDo0Ed5XnPdp5xp8uU7yKERtVWw"
/* {"alg":"HS256","crit":["exp"]} . {"sub":"u1","exp":2000000000} , S32 */
#define CRIT                                                                                                           \
    "eyJhbGciOiJIUzI1NiIsImNyaXQiOlsiZXhwIl19.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0.348X2dLGPbVBEXzOrOnPAKUcwZmvy-"  \
    "X0dmLpVHwGVJk"
/* {"alg":"HS256","alg":"none"} . {"sub":"u1","exp":2000000000} , S32 */
#define HDR_DUP_ALG                                                                                                    \
    "eyJhbGciOiJIUzI1NiIsImFsZyI6Im5vbmUifQ.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0."                                  \
    "BgBwV1HXdG6DsurB36U419IBthYa3fuu3FUOo2jNhaY"
/* alg=HS256 . {"sub":"u1","exp":2000000000} , S32 */
#define HDR_NOT_JSON "YWxnPUhTMjU2.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0.Bu_I7aWE4UU1OVZLLp7hL5ykhETlkKLrdZtvn1OZ9TE"
/* ["HS256"] . {"sub":"u1","exp":2000000000} , S32 */
#define HDR_ARRAY "WyJIUzI1NiJd.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0.At7OJRGZetFG9FyFZk5qyBse1ZgXEEIjLgZwP8SZOOc"
/* {"alg":"HS256"}x . {"sub":"u1","exp":2000000000} , S32 */
#define HDR_TRAILING                                                                                                   \
    "eyJhbGciOiJIUzI1NiJ9eA.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0.3agbNJAcN5kk3H5xX3EaJbde_NA-N_zWAvWc3QIbSkU"
/* {"alg":"HS256","typ":"JWT"} . {"sub":"u1"} , S32 */
#define NO_EXP "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSJ9.R93gCtFQrs7LI-qH9YOvQOH3KH9qgvzJylX9qIGvC_4"
/* {"alg":"HS256","typ":"JWT"} . {"sub":"u1","exp":"2000000000"} , S32 */
#define EXP_STRING                                                                                                     \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6IjIwMDAwMDAwMDAifQ."                                 \
    "5xhERKzkE8aZPD1jUFzRcHm6kaklfPAb4-lvHirqDqc"
/* {"alg":"HS256","typ":"JWT"} . {"sub":"u1","exp":null} , S32 */
#define EXP_NULL                                                                                                       \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6bnVsbH0.lq22mLR9XV4czFO27OUiSjA5KT1zTi0PCXVc2Q_pFew"
/* {"alg":"HS256","typ":"JWT"} . {"sub":"u1","exp":true} , S32 */
#define EXP_BOOL                                                                                                       \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6dHJ1ZX0.SmnDR4T654LBq9ADJN4GHW3GC9RT78xYiYk97hEUjxE"
/* {"alg":"HS256","typ":"JWT"} . {"exp":2000000000} , S32 */
#define NO_SUB                                                                                                         \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjIwMDAwMDAwMDB9.lrm1yWGERkJQ_29BR6wVJnnxATt4bqL0lf89x1P6kAs"
/* {"alg":"HS256","typ":"JWT"} . {"sub":42,"exp":2000000000} , S32 */
#define SUB_NUMBER                                                                                                     \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOjQyLCJleHAiOjIwMDAwMDAwMDB9.2_royt5dW-"                             \
    "6PmVw16riFbmjhzyEFGzJsrgGH70vOzaM"
/* {"alg":"HS256","typ":"JWT"} . {"sub":"","exp":2000000000} , S32 */
#define SUB_EMPTY                                                                                                      \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIiLCJleHAiOjIwMDAwMDAwMDB9.utZEY-rraq4cVoL4g4weB-a5eX_"            \
    "GM6zZFFVMsXgtIDg"
/* {"alg":"HS256","typ":"JWT"} . {"sub":"u 1","exp":2000000000} , S32 */
#define SUB_SPACE                                                                                                      \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1IDEiLCJleHAiOjIwMDAwMDAwMDB9.NlkEPkKEh_skUq_"                    \
    "y3BqcMtqFud6yYTnAh45jD15TJ_k"
/* {"alg":"HS256","typ":"JWT"} . {"sub":"u1/../u2","exp":2000000000} , S32 */
#define SUB_SLASH                                                                                                      \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MS8uLi91MiIsImV4cCI6MjAwMDAwMDAwMH0.G9iw_"                       \
    "EAMqkalcSdC7zWX3jsSkwSRTXh1V_XSSYEe3C4"
/* {"alg":"HS256","typ":"JWT"} . {"sub":"u1","exp":2000000000,"nbf":1999999000} , S32 */
#define NBF                                                                                                            \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMCwibmJmIjoxOTk5OTk5MDAwfQ."             \
    "TJZrKv5dvXbxdEjR4CK32juCrRnEsPyyaOmvs5CGisc"
/* {"alg":"HS256","typ":"JWT"} . {"sub":"u1","exp":2000000000,"nbf":"soon"} , S32 */
#define NBF_STRING                                                                                                     \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMCwibmJmIjoic29vbiJ9."                   \
    "TDYi6o2XKRC7aksrYpqmfsfQZI-051MBs_JznrBBJNE"
/* {"alg":"HS256","typ":"JWT"} . {"sub":"u1","exp":2000000000,"iat":"now"} , S32 */
#define IAT_STRING                                                                                                     \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMCwiaWF0Ijoibm93In0.0d6Q_"               \
    "SrqOv2xNCy0i6BEYcYJU3hZ6c9jmMVGDHICkuY"
/* {"alg":"HS256","typ":"JWT"} . {"sub":"u1","exp":2000000000,"iat":2000001000} , S32 */
#define IAT_FUTURE                                                                                                     \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMCwiaWF0IjoyMDAwMDAxMDAwfQ."             \
    "rKyrbKHQWX8Z_WTU-kU2LQkTrPvPFI49uxjyawDxYnQ"
/* {"alg":"HS256","typ":"JWT"} . {"sub":"u1","exp":2000000000.5} , S32 */
#define EXP_REAL                                                                                                       \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMC41fQ."                                 \
    "OFUKzsaShJrL0ELp832iNkKFwZOZBRgT8kpI3K06v1o"
/* {"alg":"HS256","typ":"JWT"} . {"sub":"u1","exp":9223372036854775807} , S32 */
#define EXP_MAX                                                                                                        \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6OTIyMzM3MjAzNjg1NDc3NTgwN30.3NadWhyaMRq_a67juT8t_"   \
    "0qib81UVQystDp4n-S4Lwk"
/* {"alg":"HS256","typ":"JWT"} . {"sub":"u1","exp":-9223372036854775808} , S32 */
#define EXP_MIN                                                                                                        \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6LTkyMjMzNzIwMzY4NTQ3NzU4MDh9.V9adiDdAzqiPGC_"        \
    "5bQ6ld3IXOpyyMGDZ9heiQqM2VXI"
/* {"alg":"HS256","typ":"JWT"} . {"sub":"u1","exp":1e300} , S32 */
#define EXP_HUGE_REAL                                                                                                  \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6MWUzMDB9.P8BPztAJYxL7Ismj5SqCfFmVPMfhh7_"            \
    "RBUnthu3Bod8"
/* {"alg":"HS256","typ":"JWT"} . {"sub":"u1","exp":2000000000,"nbf":-9223372036854775808} , S32 */
#define NBF_MIN                                                                                                        \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                                            \
    "eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMCwibmJmIjotOTIyMzM3MjAzNjg1NDc3NTgwOH0.NfcRb_b9hr2-MV_"                      \
    "hlXzUmZne1bgCZUHZy1Pl3dIzAv4"
/* {"alg":"HS256","typ":"JWT"} . {"sub":"u1","exp":9223372036854775807,"nbf":9223372036854775807} , S32 */
#define NBF_MAX                                                                                                        \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                                            \
    "eyJzdWIiOiJ1MSIsImV4cCI6OTIyMzM3MjAzNjg1NDc3NTgwNywibmJmIjo5MjIzMzcyMDM2ODU0Nzc1ODA3fQ.cZHlrG0Q04n-"              \
    "5m1l18oeV512NbkpBVRS3LuHcL_m6iM"
/* {"alg":"HS256","typ":"JWT"} . [{"sub":"u1","exp":2000000000}] , S32 */
#define PAY_ARRAY                                                                                                      \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.W3sic3ViIjoidTEiLCJleHAiOjIwMDAwMDAwMDB9XQ.mQo6HYMHeNWEsEok6xkustDxS_"       \
    "KulIwTRqP-hWA9gxs"
/* {"alg":"HS256","typ":"JWT"} . sub=u1 , S32 */
#define PAY_NOT_JSON "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.c3ViPXUx.DVKu1NUmSroKzIAP8x7cvNu7BNW74_aYKCCyTxjlZew"
/* {"alg":"HS256","typ":"JWT"} . {"sub":"u1","exp":2000000000,"sub":"u2"} , S32 */
#define PAY_DUP_SUB                                                                                                    \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMCwic3ViIjoidTIifQ."                     \
    "VmroYXI386E0GGyZSmRJ6h4_kVNWnTd6mhR61bp_r_8"
/* {"alg":"HS256","typ":"JWT"} . {"sub":"u1","exp":2000000000} {} , S32 */
#define PAY_TRAILING                                                                                                   \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0ge30.KzQhyDy1yAACSoqhdjOJBqr5Vy_"     \
    "stGDmgTxNxyn2-f4"
/* {"alg":"HS256","typ":"JWT"} . {"sub":"u1","exp":99999999999999999999} , S32 */
#define PAY_BIG_INT                                                                                                    \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6OTk5OTk5OTk5OTk5OTk5OTk5OTl9."                       \
    "HHr8LBSe4AvmDbHtahmPzuua32UoEQfhOeAgM-_Kh9o"
/* VALID with its payload padded as standard base64 would ("=" to a multiple of 4) */
#define PAY_PADDED                                                                                                     \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0=."                                   \
    "b6rcXfqrOufAQ6Ew6mAyBbqyYdzREa0XQFQA3LQtAq8"
/* VALID with the signature padded to a multiple of 4 */
#define SIG_PADDED                                                                                                     \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMH0."                                    \
    "b6rcXfqrOufAQ6Ew6mAyBbqyYdzREa0XQFQA3LQtAq8="

/* RFC 7515 appendix A.1: the HS256 example, its key the JWK's "k" decoded. The header has "typ"
 * first and CRLFs inside; the payload has no "sub". */
#define RFC7515_A1                                                                                                     \
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"                                                                         \
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"                  \
    ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
static const unsigned char RFC7515_A1_KEY[64] = {
    0x03, 0x23, 0x35, 0x4b, 0x2b, 0x0f, 0xa5, 0xbc, 0x83, 0x7e, 0x06, 0x65, 0x77, 0x7b, 0xa6, 0x8f,
    0x5a, 0xb3, 0x28, 0xe6, 0xf0, 0x54, 0xc9, 0x28, 0xa9, 0x0f, 0x84, 0xb2, 0xd2, 0x50, 0x2e, 0xbf,
    0xd3, 0xfb, 0x5a, 0x92, 0xd2, 0x06, 0x47, 0xef, 0x96, 0x8a, 0xb4, 0xc3, 0x77, 0x62, 0x3d, 0x22,
    0x3d, 0x2e, 0x21, 0x72, 0x05, 0x2e, 0x4f, 0x08, 0xc0, 0xcd, 0x9a, 0xf5, 0x67, 0xd0, 0x80, 0xa3};

/* Only the secret S32: what most HS256 tests verify with. */
static const gw_jwt_keys HS_ONLY = {.secret = S32, .secret_len = S32_LEN};

/* Verifies the NUL-terminated `token` with `keys`; *why always set. `sub` starts dirty to show
 * it is cleared. */
static gw_jwt_result verify_with(const char *token, const gw_jwt_keys *keys, int64_t now, char sub[CART_ID_MAX + 1],
                                 const char **why)
{
    strcpy(sub, "stale");
    *why = NULL;
    gw_jwt_result r = gw_jwt_verify(token, strlen(token), keys, now, sub, why);
    ck_assert_ptr_nonnull(*why);
    if (r != GW_JWT_OK)
        ck_assert_str_eq(sub, "");
    return r;
}

/* The same with the HMAC key key[0..key_len) alone (NULL: HS256 refused). */
static gw_jwt_result check_with(const char *token, const unsigned char *key, size_t key_len, int64_t now,
                                char sub[CART_ID_MAX + 1], const char **why)
{
    gw_jwt_keys keys = {.secret = key, .secret_len = key_len};
    return verify_with(token, &keys, now, sub, why);
}

/* The result of `token` under S32 at `now`, for the many cases that need nothing else. */
static gw_jwt_result check_at(const char *token, int64_t now)
{
    char sub[CART_ID_MAX + 1];
    const char *why;
    return check_with(token, S32, S32_LEN, now, sub, &why);
}

static gw_jwt_result check(const char *token)
{
    return check_at(token, NOW);
}

/* The reason given for `token` under S32 at NOW. */
static const char *why_of(const char *token)
{
    char sub[CART_ID_MAX + 1];
    const char *why;
    check_with(token, S32, S32_LEN, NOW, sub, &why);
    return why;
}

/* For the size limits only, tokens are built here (jose_fixture.c: base64url, and HMAC-SHA256
 * by OpenSSL). The vectors above pin down that gw_jwt_verify signs the same way. */
static char *make_token(const char *header, const char *payload)
{
    return fx_hs256_token(header, payload, S32, S32_LEN);
}

#define HS256_JWT "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

START_TEST(test_valid)
{
    char sub[CART_ID_MAX + 1];
    const char *why;

    ck_assert_int_eq(check_with(VALID, S32, S32_LEN, NOW, sub, &why), GW_JWT_OK);
    ck_assert_str_eq(sub, "u1");
    ck_assert_str_eq(why, "ok");
    ck_assert_int_eq(check_with(VALID_NOTYP, S32, S32_LEN, NOW, sub, &why), GW_JWT_OK);
    ck_assert_str_eq(sub, "u1");
    ck_assert_int_eq(check_with(VALID_TYP_LOWER, S32, S32_LEN, NOW, sub, &why), GW_JWT_OK);
    ck_assert_str_eq(sub, "u1");
    ck_assert_int_eq(check_with(SUB_64, S32, S32_LEN, NOW, sub, &why), GW_JWT_OK);
    ck_assert_uint_eq(strlen(sub), 64);

    /* Only `len` bytes count: what follows is not part of the token. */
    char longer[sizeof VALID + 8];
    snprintf(longer, sizeof longer, "%s.extra", VALID);
    ck_assert_int_eq(gw_jwt_verify(longer, strlen(VALID), &HS_ONLY, NOW, sub, NULL), GW_JWT_OK);
    ck_assert_int_eq(gw_jwt_verify(longer, strlen(longer), &HS_ONLY, NOW, sub, NULL), GW_JWT_MALFORMED);
}
END_TEST

START_TEST(test_secret_sizes)
{
    char sub[CART_ID_MAX + 1];
    const char *why;

    /* 64 bytes; its nbf and iat are EXP - 3600, an hour before the now used here. */
    ck_assert_int_eq(check_with(VALID_64, S64, S64_LEN, EXP - 60, sub, &why), GW_JWT_OK);
    ck_assert_str_eq(sub, "user-64.key:x_y");
    /* Each key only verifies its own tokens. */
    ck_assert_int_eq(check_with(VALID_64, S32, S32_LEN, NOW, sub, &why), GW_JWT_BAD_SIGNATURE);
    ck_assert_int_eq(check_with(VALID, S64, S64_LEN, NOW, sub, &why), GW_JWT_BAD_SIGNATURE);
    /* A key shorter than 32 bytes is the server's misconfiguration, even for a token it signed. */
    ck_assert_int_eq(check_with(SIGNED_S31, S32, S31_LEN, NOW, sub, &why), GW_JWT_INTERNAL);
    ck_assert_str_eq(why, "server secret unusable");
    /* No secret at all: HS256 is simply not accepted. */
    ck_assert_int_eq(check_with(VALID, NULL, 0, NOW, sub, &why), GW_JWT_BAD_ALG);
    ck_assert_str_eq(why, "alg HS256 not accepted here");
}
END_TEST

START_TEST(test_rfc7515_a1)
{
    char sub[CART_ID_MAX + 1];
    const char *why;
    char flipped[] = RFC7515_A1;

    /* The signature holds (else BAD_SIGNATURE); then the missing sub is what fails. */
    ck_assert_int_eq(check_with(RFC7515_A1, RFC7515_A1_KEY, sizeof RFC7515_A1_KEY, 1300819000, sub, &why),
                     GW_JWT_BAD_CLAIMS);
    ck_assert_str_eq(why, "sub missing");
    /* 'd' -> 'c' flips the lowest bit of the signature's first 6-bit group. */
    flipped[strlen(flipped) - 43] = 'c';
    ck_assert_int_eq(check_with(flipped, RFC7515_A1_KEY, sizeof RFC7515_A1_KEY, 1300819000, sub, &why),
                     GW_JWT_BAD_SIGNATURE);
    ck_assert_int_eq(check_with(RFC7515_A1, S64, S64_LEN, 1300819000, sub, &why), GW_JWT_BAD_SIGNATURE);
}
END_TEST

START_TEST(test_forged)
{
    ck_assert_int_eq(check(FLIPPED_SIG), GW_JWT_BAD_SIGNATURE);
    ck_assert_int_eq(check(FLIPPED_SIG_LAST), GW_JWT_BAD_SIGNATURE);
    ck_assert_str_eq(why_of(FLIPPED_SIG), "signature does not match");
    ck_assert_int_eq(check(OTHER_SECRET), GW_JWT_BAD_SIGNATURE);
    ck_assert_int_eq(check(SWAPPED_SUB), GW_JWT_BAD_SIGNATURE);
    ck_assert_int_eq(check(SIG_33), GW_JWT_BAD_SIGNATURE);
    ck_assert_str_eq(why_of(SIG_33), "signature has the wrong length");
    ck_assert_int_eq(check(SIG_EMPTY), GW_JWT_BAD_SIGNATURE);
    ck_assert_str_eq(why_of(SIG_EMPTY), "signature missing");

    /* A bad signature wins over bad claims: nothing in the payload is looked at first. */
    char sub[CART_ID_MAX + 1];
    const char *why;
    ck_assert_int_eq(check_with(OTHER_SECRET, OTHER, S32_LEN, NOW, sub, &why), GW_JWT_OK);
    ck_assert_int_eq(check_with(OTHER_SECRET, OTHER, S32_LEN, EXP + 3600, sub, &why), GW_JWT_EXPIRED);
    ck_assert_int_eq(check_with(OTHER_SECRET, S32, S32_LEN, EXP + 3600, sub, &why), GW_JWT_BAD_SIGNATURE);
}
END_TEST

START_TEST(test_alg)
{
    ck_assert_int_eq(check(ALG_NONE), GW_JWT_BAD_ALG);
    ck_assert_str_eq(why_of(ALG_NONE), "alg must be HS256, RS256 or ES256");
    ck_assert_int_eq(check(ALG_NONE_SIGNED), GW_JWT_BAD_ALG);
    ck_assert_int_eq(check(ALG_HS512), GW_JWT_BAD_ALG);
    ck_assert_int_eq(check(ALG_RS256), GW_JWT_BAD_ALG);
    ck_assert_str_eq(why_of(ALG_RS256), "alg RS256 not accepted here");
    ck_assert_int_eq(check(ALG_LOWER), GW_JWT_BAD_ALG);
    ck_assert_int_eq(check(ALG_MISSING), GW_JWT_BAD_ALG);
    ck_assert_int_eq(check(ALG_NUMBER), GW_JWT_BAD_ALG);
    ck_assert_int_eq(check(ALG_SPACE), GW_JWT_BAD_ALG);
    /* "HS256\u0000": jansson refuses the NUL, so the header is not even JSON to us. */
    ck_assert_int_eq(check(ALG_NUL), GW_JWT_MALFORMED);
}
END_TEST

START_TEST(test_header)
{
    ck_assert_int_eq(check(TYP_JOSE), GW_JWT_MALFORMED);
    ck_assert_str_eq(why_of(TYP_JOSE), "typ must be JWT");
    ck_assert_int_eq(check(TYP_NUMBER), GW_JWT_MALFORMED);
    ck_assert_int_eq(check(CRIT), GW_JWT_MALFORMED);
    ck_assert_str_eq(why_of(CRIT), "crit header not supported");
    /* {"alg":"HS256","alg":"none"}: no guessing which alg counts. */
    ck_assert_int_eq(check(HDR_DUP_ALG), GW_JWT_MALFORMED);
    ck_assert_int_eq(check(HDR_NOT_JSON), GW_JWT_MALFORMED);
    ck_assert_str_eq(why_of(HDR_NOT_JSON), "header is not a JSON object");
    ck_assert_int_eq(check(HDR_ARRAY), GW_JWT_MALFORMED);
    ck_assert_int_eq(check(HDR_TRAILING), GW_JWT_MALFORMED);
}
END_TEST

START_TEST(test_expiry)
{
    /* Expired from exp + GW_JWT_LEEWAY_S on. */
    ck_assert_int_eq(check_at(VALID, EXP - 1), GW_JWT_OK);
    ck_assert_int_eq(check_at(VALID, EXP), GW_JWT_OK);
    ck_assert_int_eq(check_at(VALID, EXP + GW_JWT_LEEWAY_S - 1), GW_JWT_OK);
    ck_assert_int_eq(check_at(VALID, EXP + GW_JWT_LEEWAY_S), GW_JWT_EXPIRED);
    ck_assert_int_eq(check_at(VALID, INT64_MAX), GW_JWT_EXPIRED);
    ck_assert_int_eq(check_at(VALID, INT64_MIN), GW_JWT_OK);
    char sub[CART_ID_MAX + 1];
    const char *why;
    ck_assert_int_eq(check_with(VALID, S32, S32_LEN, EXP + 3600, sub, &why), GW_JWT_EXPIRED);
    ck_assert_str_eq(why, "token expired");

    /* exp 2000000000.5 counts as 2000000001. */
    ck_assert_int_eq(check_at(EXP_REAL, EXP + GW_JWT_LEEWAY_S), GW_JWT_OK);
    ck_assert_int_eq(check_at(EXP_REAL, EXP + GW_JWT_LEEWAY_S + 1), GW_JWT_EXPIRED);

    /* The extremes do not overflow. */
    ck_assert_int_eq(check_at(EXP_MAX, NOW), GW_JWT_OK);
    ck_assert_int_eq(check_at(EXP_MAX, INT64_MAX), GW_JWT_OK); /* within the leeway of exp */
    ck_assert_int_eq(check_at(EXP_MIN, NOW), GW_JWT_EXPIRED);
    ck_assert_int_eq(check_at(EXP_MIN, INT64_MIN), GW_JWT_OK);
    ck_assert_int_eq(check_at(EXP_MIN, INT64_MAX), GW_JWT_EXPIRED);
    ck_assert_int_eq(check_at(EXP_HUGE_REAL, INT64_MAX - GW_JWT_LEEWAY_S), GW_JWT_OK);
}
END_TEST

START_TEST(test_not_before)
{
    /* nbf = EXP - 1000: not yet valid until nbf - GW_JWT_LEEWAY_S. */
    int64_t nbf = EXP - 1000;
    ck_assert_int_eq(check_at(NBF, nbf - GW_JWT_LEEWAY_S - 1), GW_JWT_NOT_YET_VALID);
    ck_assert_int_eq(check_at(NBF, nbf - GW_JWT_LEEWAY_S), GW_JWT_OK);
    ck_assert_int_eq(check_at(NBF, nbf), GW_JWT_OK);
    ck_assert_int_eq(check_at(NBF, NOW - 1000000), GW_JWT_NOT_YET_VALID);
    ck_assert_int_eq(check_at(NBF, INT64_MIN), GW_JWT_NOT_YET_VALID);
    char sub[CART_ID_MAX + 1];
    const char *why;
    ck_assert_int_eq(check_with(NBF, S32, S32_LEN, NOW, sub, &why), GW_JWT_NOT_YET_VALID);
    ck_assert_str_eq(why, "token not yet valid");

    ck_assert_int_eq(check_at(NBF_MIN, NOW), GW_JWT_OK);
    ck_assert_int_eq(check_at(NBF_MAX, NOW), GW_JWT_NOT_YET_VALID);
    ck_assert_int_eq(check_at(NBF_MAX, INT64_MAX), GW_JWT_OK);
    /* iat is typed but not judged: one in the future is fine. */
    ck_assert_int_eq(check(IAT_FUTURE), GW_JWT_OK);
}
END_TEST

START_TEST(test_claims)
{
    ck_assert_int_eq(check(NO_EXP), GW_JWT_BAD_CLAIMS);
    ck_assert_str_eq(why_of(NO_EXP), "exp missing");
    ck_assert_int_eq(check(EXP_STRING), GW_JWT_BAD_CLAIMS);
    ck_assert_str_eq(why_of(EXP_STRING), "exp is not a number");
    ck_assert_int_eq(check(EXP_NULL), GW_JWT_BAD_CLAIMS);
    ck_assert_int_eq(check(EXP_BOOL), GW_JWT_BAD_CLAIMS);
    ck_assert_int_eq(check(NBF_STRING), GW_JWT_BAD_CLAIMS);
    ck_assert_str_eq(why_of(NBF_STRING), "nbf is not a number");
    ck_assert_int_eq(check(IAT_STRING), GW_JWT_BAD_CLAIMS);
    ck_assert_str_eq(why_of(IAT_STRING), "iat is not a number");

    ck_assert_int_eq(check(NO_SUB), GW_JWT_BAD_CLAIMS);
    ck_assert_str_eq(why_of(NO_SUB), "sub missing");
    ck_assert_int_eq(check(SUB_NUMBER), GW_JWT_BAD_CLAIMS);
    ck_assert_str_eq(why_of(SUB_NUMBER), "sub is not a string");
    ck_assert_int_eq(check(SUB_EMPTY), GW_JWT_BAD_CLAIMS);
    ck_assert_str_eq(why_of(SUB_EMPTY), "sub is not a valid user_id");
    ck_assert_int_eq(check(SUB_SPACE), GW_JWT_BAD_CLAIMS);
    ck_assert_int_eq(check(SUB_SLASH), GW_JWT_BAD_CLAIMS);
    ck_assert_int_eq(check(SUB_65), GW_JWT_BAD_CLAIMS);
    /* Bad claims are bad even in an expired token. */
    ck_assert_int_eq(check_at(NO_SUB, EXP + 3600), GW_JWT_BAD_CLAIMS);
}
END_TEST

START_TEST(test_malformed_shape)
{
    char sub[CART_ID_MAX + 1];
    const char *why = NULL;

    ck_assert_int_eq(gw_jwt_verify(NULL, 0, &HS_ONLY, NOW, sub, &why), GW_JWT_MALFORMED);
    ck_assert_str_eq(why, "missing token");
    ck_assert_int_eq(gw_jwt_verify("", 0, &HS_ONLY, NOW, sub, NULL), GW_JWT_MALFORMED);
    ck_assert_int_eq(check("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9"), GW_JWT_MALFORMED);
    ck_assert_str_eq(why_of("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9"), "not three dot-separated parts");
    ck_assert_int_eq(check(VALID ".AAAA"), GW_JWT_MALFORMED); /* four parts */
    ck_assert_int_eq(check(VALID "."), GW_JWT_MALFORMED);
    ck_assert_int_eq(check("nodots"), GW_JWT_MALFORMED);
    ck_assert_int_eq(check(".."), GW_JWT_MALFORMED);
    ck_assert_str_eq(why_of(".."), "empty header or payload");
    ck_assert_int_eq(check(".eyJzdWIiOiJ1MSJ9.AAAA"), GW_JWT_MALFORMED);
    ck_assert_int_eq(check("eyJhbGciOiJIUzI1NiJ9..AAAA"), GW_JWT_MALFORMED);
    ck_assert_int_eq(check(" " VALID), GW_JWT_MALFORMED);
    ck_assert_int_eq(check(VALID " "), GW_JWT_MALFORMED);
    ck_assert_int_eq(gw_jwt_verify(VALID, sizeof VALID, &HS_ONLY, NOW, sub, NULL), GW_JWT_MALFORMED); /* NUL */
}
END_TEST

START_TEST(test_malformed_base64)
{
    char t[sizeof VALID];
    size_t sig = strlen(VALID) - 43;

    ck_assert_int_eq(check(PAY_PADDED), GW_JWT_MALFORMED);
    ck_assert_str_eq(why_of(PAY_PADDED), "invalid base64url");
    ck_assert_int_eq(check(SIG_PADDED), GW_JWT_MALFORMED);

    /* Standard base64's '+' and '/' are not base64url. */
    strcpy(t, VALID);
    t[1] = '+';
    ck_assert_int_eq(check(t), GW_JWT_MALFORMED);
    strcpy(t, VALID);
    t[sig + 5] = '/';
    ck_assert_int_eq(check(t), GW_JWT_MALFORMED);
    strcpy(t, VALID);
    t[sig + 5] = '\xc3';
    ck_assert_int_eq(check(t), GW_JWT_MALFORMED);

    /* The signature's 43 characters carry 258 bits; the last 2 must be 0. '8' is 111100, '9'
     * 111101: the same bytes, but not the canonical spelling. */
    strcpy(t, VALID);
    ck_assert_int_eq(t[strlen(t) - 1], '8');
    t[strlen(t) - 1] = '9';
    ck_assert_int_eq(check(t), GW_JWT_MALFORMED);

    /* A length of 4n+1 cannot be base64 at all. */
    strcpy(t, VALID);
    t[sig + 41] = '\0'; /* 41 = 4 * 10 + 1 */
    ck_assert_int_eq(check(t), GW_JWT_MALFORMED);
}
END_TEST

START_TEST(test_malformed_payload)
{
    /* Correctly signed, but not a claims set. */
    ck_assert_int_eq(check(PAY_ARRAY), GW_JWT_MALFORMED);
    ck_assert_str_eq(why_of(PAY_ARRAY), "payload is not a JSON object");
    ck_assert_int_eq(check(PAY_NOT_JSON), GW_JWT_MALFORMED);
    ck_assert_int_eq(check(PAY_DUP_SUB), GW_JWT_MALFORMED); /* {"sub":"u1",...,"sub":"u2"} */
    ck_assert_int_eq(check(PAY_TRAILING), GW_JWT_MALFORMED);
    ck_assert_int_eq(check(PAY_BIG_INT), GW_JWT_MALFORMED); /* beyond int64: jansson refuses it */
}
END_TEST

START_TEST(test_length_limit)
{
    /* Grow a "pad" claim until the token is exactly GW_JWT_MAX_LEN, then one more. */
    char *payload = malloc(GW_JWT_MAX_LEN + 64);
    size_t want[] = {GW_JWT_MAX_LEN, GW_JWT_MAX_LEN + 1};

    ck_assert_ptr_nonnull(payload);
    for (size_t w = 0; w < 2; w++) {
        bool found = false;
        for (int pad = 5900; pad < 6200 && !found; pad++) {
            int n = snprintf(payload, GW_JWT_MAX_LEN + 64, "{\"sub\":\"u1\",\"exp\":%d,\"pad\":\"%*s\"}", EXP, pad, "");
            ck_assert_int_gt(n, 0);
            char *t = make_token(HS256_JWT, payload);
            if (strlen(t) == want[w]) {
                found = true;
                ck_assert_int_eq(check(t), w == 0 ? GW_JWT_OK : GW_JWT_MALFORMED);
                if (w == 1)
                    ck_assert_str_eq(why_of(t), "token too long");
            }
            free(t);
        }
        ck_assert(found);
    }
    free(payload);

    /* Far larger: refused on its length, unread. */
    size_t huge = 1 << 20;
    char *t = malloc(huge + 1);
    char sub[CART_ID_MAX + 1];
    ck_assert_ptr_nonnull(t);
    memset(t, 'A', huge);
    t[10] = '.';
    t[20] = '.';
    t[huge] = '\0';
    ck_assert_int_eq(gw_jwt_verify(t, huge, &HS_ONLY, NOW, sub, NULL), GW_JWT_MALFORMED);
    free(t);
}
END_TEST

/* {"sub":"u1","exp":EXP,"x":[[...]]} nesting `depth` levels in all, the outer object included. */
static char *nested_payload(int depth)
{
    char *p = malloc((size_t)depth * 2 + 64);
    int n;

    ck_assert_ptr_nonnull(p);
    n = sprintf(p, "{\"sub\":\"u1\",\"exp\":%d,\"x\":", EXP);
    for (int i = 1; i < depth; i++)
        p[n++] = '[';
    for (int i = 1; i < depth; i++)
        p[n++] = ']';
    if (depth == 1)
        p[n++] = '0';
    p[n++] = '}';
    p[n] = '\0';
    return p;
}

START_TEST(test_depth_limit)
{
    int depths[] = {GW_JWT_MAX_DEPTH, GW_JWT_MAX_DEPTH + 1, 3000};
    gw_jwt_result want[] = {GW_JWT_OK, GW_JWT_MALFORMED, GW_JWT_MALFORMED};

    for (size_t i = 0; i < 3; i++) {
        char *p = nested_payload(depths[i]);
        char *t = make_token(HS256_JWT, p);
        ck_assert_int_eq(check(t), want[i]);
        free(t);
        free(p);
    }
    /* Brackets inside strings do not count. */
    char *t = make_token(HS256_JWT, "{\"sub\":\"u1\",\"exp\":2000000000,\"x\":\"[[[[[[[[[[[[[[[[[[[[\\\"[[[[\"}");
    ck_assert_int_eq(check(t), GW_JWT_OK);
    free(t);
    /* Nor does the header escape the limit. */
    t = make_token("{\"alg\":\"HS256\",\"x\":[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]}",
                   "{\"sub\":\"u1\",\"exp\":2000000000}");
    ck_assert_int_eq(check(t), GW_JWT_MALFORMED);
    free(t);
}
END_TEST

START_TEST(test_result_names)
{
    ck_assert_str_eq(gw_jwt_result_name(GW_JWT_OK), "ok");
    ck_assert_str_eq(gw_jwt_result_name(GW_JWT_MALFORMED), "malformed");
    ck_assert_str_eq(gw_jwt_result_name(GW_JWT_BAD_ALG), "bad_alg");
    ck_assert_str_eq(gw_jwt_result_name(GW_JWT_BAD_SIGNATURE), "bad_signature");
    ck_assert_str_eq(gw_jwt_result_name(GW_JWT_EXPIRED), "expired");
    ck_assert_str_eq(gw_jwt_result_name(GW_JWT_NOT_YET_VALID), "not_yet_valid");
    ck_assert_str_eq(gw_jwt_result_name(GW_JWT_BAD_CLAIMS), "bad_claims");
    ck_assert_str_eq(gw_jwt_result_name(GW_JWT_UNKNOWN_KEY), "unknown_key");
    ck_assert_str_eq(gw_jwt_result_name(GW_JWT_INTERNAL), "internal");
    ck_assert_str_eq(gw_jwt_result_name((gw_jwt_result)99), "unknown");
}
END_TEST

/* gw_jwt_bearer on a NUL-terminated header value: the token, or NULL when refused. */
static const char *bearer(const char *value, char *buf)
{
    const char *tok = NULL;
    size_t len = 0;

    if (!gw_jwt_bearer(value, strlen(value), &tok, &len))
        return NULL;
    memcpy(buf, tok, len);
    buf[len] = '\0';
    return buf;
}

START_TEST(test_bearer)
{
    char buf[64];

    ck_assert_str_eq(bearer("Bearer abc.def.ghi", buf), "abc.def.ghi");
    ck_assert_str_eq(bearer("bearer abc", buf), "abc");
    ck_assert_str_eq(bearer("BEARER   abc \t", buf), "abc");
    ck_assert_ptr_null(bearer("Basic dTE6cHc=", buf));
    ck_assert_ptr_null(bearer("Bearer", buf));
    ck_assert_ptr_null(bearer("Bearer ", buf));
    ck_assert_ptr_null(bearer("Bearer    ", buf));
    ck_assert_ptr_null(bearer("Bearerabc", buf));
    ck_assert_ptr_null(bearer("Bearer\tabc", buf));
    ck_assert_ptr_null(bearer("Bearer abc def", buf));
    ck_assert_ptr_null(bearer("", buf));
    ck_assert_ptr_null(bearer(" Bearer abc", buf));
    ck_assert(!gw_jwt_bearer(NULL, 0, NULL, NULL));
}
END_TEST

/* --- RS256 and ES256: keys made when the suite starts (jose_fixture.c), none in the repository --- */

static EVP_PKEY *rsa_key, *ec_key, *rsa_other, *ec_other;
static char *rsa_jwk; /* rsa_key's public JWK members, as an identity provider publishes them */
static gw_jwks *jwks; /* {rsa-1: rsa_key, ec-1: ec_key} */

#define RS_HDR   "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"rsa-1\"}"
#define ES_HDR   "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"ec-1\"}"
#define CLAIMS   "{\"sub\":\"u1\",\"exp\":2000000000}"
#define ISSUER   "https://idp.example/realms/shop"
#define AUDIENCE "cart-api"

static void make_keys(void)
{
    char doc[8192], err[256];
    char *ec_jwk;

    rsa_key = fx_rsa_key(2048);
    rsa_other = fx_rsa_key(2048);
    ec_key = fx_ec_key();
    ec_other = fx_ec_key();
    rsa_jwk = fx_jwk_members(rsa_key);
    ec_jwk = fx_jwk_members(ec_key);
    snprintf(doc, sizeof doc,
             "{\"keys\":[{\"kid\":\"rsa-1\",\"use\":\"sig\",\"alg\":\"RS256\",%s},{\"kid\":\"ec-1\",%s}]}", rsa_jwk,
             ec_jwk);
    free(ec_jwk);
    jwks = gw_jwks_parse(doc, strlen(doc), err, sizeof err);
    ck_assert_msg(jwks != NULL, "%s", err);
}

static void free_keys(void)
{
    gw_jwks_unref(jwks);
    free(rsa_jwk);
    EVP_PKEY_free(rsa_key);
    EVP_PKEY_free(rsa_other);
    EVP_PKEY_free(ec_key);
    EVP_PKEY_free(ec_other);
}

/* Signs header . payload with `key`, verifies the token with `keys` at `now` and frees it. */
static gw_jwt_result signed_at(const char *header, const char *payload, EVP_PKEY *key, const gw_jwt_keys *keys,
                               int64_t now, const char **why)
{
    char sub[CART_ID_MAX + 1];
    char *t = fx_token(header, payload, key);
    gw_jwt_result r = verify_with(t, keys, now, sub, why);

    if (r == GW_JWT_OK)
        ck_assert_str_eq(sub, "u1");
    free(t);
    return r;
}

static gw_jwt_result signed_check(const char *header, const char *payload, EVP_PKEY *key, const gw_jwt_keys *keys,
                                  const char **why)
{
    return signed_at(header, payload, key, keys, NOW, why);
}

/* header . payload with the signature sig[0..len), verified with `keys` at NOW. */
static gw_jwt_result raw_sig_check(const char *header, const char *payload, const unsigned char *sig, size_t len,
                                   const gw_jwt_keys *keys, const char **why)
{
    char sub[CART_ID_MAX + 1];
    char *t = fx_signing_input(header, payload);
    gw_jwt_result r;

    fx_append_sig(t, sig, len);
    r = verify_with(t, keys, NOW, sub, why);
    free(t);
    return r;
}

START_TEST(test_rs256_es256)
{
    gw_jwt_keys only = {.jwks = jwks}, both = {.secret = S32, .secret_len = S32_LEN, .jwks = jwks};
    char sub[CART_ID_MAX + 1];
    const char *why;

    ck_assert_int_eq(gw_jwks_count(jwks), 2);
    ck_assert_int_eq(signed_check(RS_HDR, CLAIMS, rsa_key, &only, &why), GW_JWT_OK);
    ck_assert_str_eq(why, "ok");
    ck_assert_int_eq(signed_check(ES_HDR, CLAIMS, ec_key, &only, &why), GW_JWT_OK);
    ck_assert_int_eq(signed_check("{\"kid\":\"ec-1\",\"alg\":\"ES256\"}", CLAIMS, ec_key, &only, &why), GW_JWT_OK);
    /* With the secret configured too, every token goes to its own key. */
    ck_assert_int_eq(signed_check(RS_HDR, CLAIMS, rsa_key, &both, &why), GW_JWT_OK);
    ck_assert_int_eq(signed_check(ES_HDR, CLAIMS, ec_key, &both, &why), GW_JWT_OK);
    ck_assert_int_eq(verify_with(VALID, &both, NOW, sub, &why), GW_JWT_OK);
    /* An HS256 token's kid is not looked at: it never sends the token to the JWKS. */
    ck_assert_int_eq(verify_with(VALID_TYP_LOWER, &both, NOW, sub, &why), GW_JWT_OK);
}
END_TEST

/* Changes one base64url character in the middle of the token's signature. */
static void tamper(char *t)
{
    char *c = strrchr(t, '.') + 10;
    *c = *c == 'A' ? 'B' : 'A';
}

START_TEST(test_asym_forged)
{
    gw_jwt_keys k = {.jwks = jwks};
    char sub[CART_ID_MAX + 1];
    const char *why;
    EVP_PKEY *keys[] = {rsa_key, ec_key};
    const char *headers[] = {RS_HDR, ES_HDR};

    for (int i = 0; i < 2; i++) {
        char *t = fx_token(headers[i], CLAIMS, keys[i]);
        tamper(t);
        ck_assert_int_eq(verify_with(t, &k, NOW, sub, &why), GW_JWT_BAD_SIGNATURE);
        ck_assert_str_eq(why, "signature does not match");
        /* The signature is checked before the claims: expired, but first of all forged. */
        ck_assert_int_eq(verify_with(t, &k, EXP + 3600, sub, &why), GW_JWT_BAD_SIGNATURE);
        free(t);

        /* Another payload under the first one's signature. */
        char *good = fx_token(headers[i], CLAIMS, keys[i]);
        char *swapped = fx_signing_input(headers[i], "{\"sub\":\"u2\",\"exp\":2000000000}");
        strcat(swapped, strrchr(good, '.'));
        ck_assert_int_eq(verify_with(swapped, &k, NOW, sub, &why), GW_JWT_BAD_SIGNATURE);
        free(swapped);
        free(good);
    }
    /* Signed by another key under the same kid: a key rotated out, or a forger's. */
    ck_assert_int_eq(signed_check(RS_HDR, CLAIMS, rsa_other, &k, &why), GW_JWT_BAD_SIGNATURE);
    ck_assert_int_eq(signed_check(ES_HDR, CLAIMS, ec_other, &k, &why), GW_JWT_BAD_SIGNATURE);
}
END_TEST

START_TEST(test_signature_lengths)
{
    gw_jwt_keys k = {.jwks = jwks};
    unsigned char sig[FX_SIG_MAX + 1];
    const char *why;
    char *input = fx_signing_input(ES_HDR, CLAIMS);
    size_t n;

    /* ES256 is r || s, 64 bytes: OpenSSL's own DER encoding of the same signature is refused. */
    n = fx_sign(ec_key, input, strlen(input), sig, true);
    ck_assert_uint_ne(n, 64);
    ck_assert_int_eq(raw_sig_check(ES_HDR, CLAIMS, sig, n, &k, &why), GW_JWT_BAD_SIGNATURE);
    ck_assert_str_eq(why, "signature has the wrong length");
    n = fx_sign(ec_key, input, strlen(input), sig, false);
    ck_assert_int_eq(raw_sig_check(ES_HDR, CLAIMS, sig, n, &k, &why), GW_JWT_OK);
    ck_assert_int_eq(raw_sig_check(ES_HDR, CLAIMS, sig, n - 1, &k, &why), GW_JWT_BAD_SIGNATURE);
    ck_assert_str_eq(why, "signature has the wrong length");
    sig[n] = 0;
    ck_assert_int_eq(raw_sig_check(ES_HDR, CLAIMS, sig, n + 1, &k, &why), GW_JWT_BAD_SIGNATURE);
    ck_assert_str_eq(why, "signature has the wrong length");
    memset(sig, 0, 64); /* r = s = 0: never a valid signature */
    ck_assert_int_eq(raw_sig_check(ES_HDR, CLAIMS, sig, 64, &k, &why), GW_JWT_BAD_SIGNATURE);
    ck_assert_int_eq(raw_sig_check(ES_HDR, CLAIMS, sig, 0, &k, &why), GW_JWT_BAD_SIGNATURE);
    ck_assert_str_eq(why, "signature missing");
    free(input);

    /* RS256: exactly the modulus's 256 bytes. */
    input = fx_signing_input(RS_HDR, CLAIMS);
    n = fx_sign(rsa_key, input, strlen(input), sig, false);
    ck_assert_uint_eq(n, 256);
    ck_assert_int_eq(raw_sig_check(RS_HDR, CLAIMS, sig, n, &k, &why), GW_JWT_OK);
    ck_assert_int_eq(raw_sig_check(RS_HDR, CLAIMS, sig, n - 1, &k, &why), GW_JWT_BAD_SIGNATURE);
    ck_assert_str_eq(why, "signature has the wrong length");
    sig[n] = 0;
    ck_assert_int_eq(raw_sig_check(RS_HDR, CLAIMS, sig, n + 1, &k, &why), GW_JWT_BAD_SIGNATURE);
    memset(sig, 0xff, n); /* the right length, but larger than the modulus */
    ck_assert_int_eq(raw_sig_check(RS_HDR, CLAIMS, sig, n, &k, &why), GW_JWT_BAD_SIGNATURE);
    ck_assert_str_eq(why, "signature does not match");
    free(input);
}
END_TEST

START_TEST(test_kid)
{
    gw_jwt_keys k = {.jwks = jwks};
    char long_kid[GW_JWK_KID_MAX + 64], header[GW_JWK_KID_MAX + 128];
    const char *why;

    ck_assert_int_eq(signed_check("{\"alg\":\"RS256\",\"kid\":\"rsa-2\"}", CLAIMS, rsa_key, &k, &why),
                     GW_JWT_UNKNOWN_KEY);
    ck_assert_str_eq(why, "unknown kid");
    ck_assert_int_eq(signed_check("{\"alg\":\"RS256\",\"kid\":\"RSA-1\"}", CLAIMS, rsa_key, &k, &why),
                     GW_JWT_UNKNOWN_KEY);
    ck_assert_int_eq(signed_check("{\"alg\":\"ES256\",\"kid\":\"\"}", CLAIMS, ec_key, &k, &why), GW_JWT_UNKNOWN_KEY);
    /* No kid: refused, even though the set holds one key of each algorithm (see jwt.h). */
    ck_assert_int_eq(signed_check("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", CLAIMS, rsa_key, &k, &why),
                     GW_JWT_UNKNOWN_KEY);
    ck_assert_str_eq(why, "kid missing");
    ck_assert_int_eq(signed_check("{\"alg\":\"ES256\"}", CLAIMS, ec_key, &k, &why), GW_JWT_UNKNOWN_KEY);
    ck_assert_int_eq(signed_check("{\"alg\":\"RS256\",\"kid\":1}", CLAIMS, rsa_key, &k, &why), GW_JWT_MALFORMED);
    ck_assert_str_eq(why, "kid is not a string");
    memset(long_kid, 'k', sizeof long_kid - 1);
    long_kid[sizeof long_kid - 1] = '\0';
    snprintf(header, sizeof header, "{\"alg\":\"RS256\",\"kid\":\"%s\"}", long_kid);
    ck_assert_int_eq(signed_check(header, CLAIMS, rsa_key, &k, &why), GW_JWT_UNKNOWN_KEY);
    /* A kid of a key of the other algorithm. */
    ck_assert_int_eq(signed_check("{\"alg\":\"ES256\",\"kid\":\"rsa-1\"}", CLAIMS, ec_key, &k, &why), GW_JWT_BAD_ALG);
    ck_assert_str_eq(why, "alg does not match the key's");
    ck_assert_int_eq(signed_check("{\"alg\":\"RS256\",\"kid\":\"ec-1\"}", CLAIMS, rsa_key, &k, &why), GW_JWT_BAD_ALG);
}
END_TEST

START_TEST(test_alg_confusion)
{
    gw_jwt_keys only = {.jwks = jwks}, both = {.secret = S32, .secret_len = S32_LEN, .jwks = jwks};
    unsigned char mac[EVP_MAX_MD_SIZE * 2], *spki = NULL;
    char sub[CART_ID_MAX + 1];
    const char *why;
    char *t;
    int spki_len;

    /* An RS256 or ES256 token where only the secret is configured, and HS256 where only the JWKS is. */
    ck_assert_int_eq(signed_check(RS_HDR, CLAIMS, rsa_key, &HS_ONLY, &why), GW_JWT_BAD_ALG);
    ck_assert_str_eq(why, "alg RS256 not accepted here");
    ck_assert_int_eq(signed_check(ES_HDR, CLAIMS, ec_key, &HS_ONLY, &why), GW_JWT_BAD_ALG);
    ck_assert_str_eq(why, "alg ES256 not accepted here");
    ck_assert_int_eq(verify_with(VALID, &only, NOW, sub, &why), GW_JWT_BAD_ALG);
    ck_assert_str_eq(why, "alg HS256 not accepted here");

    /* A header that claims RS256 (or ES256) over an HMAC under the secret: the secret is never an
     * RSA or EC key, so the signature is only ever checked against rsa-1. */
    t = fx_hs256_token(RS_HDR, CLAIMS, S32, S32_LEN);
    ck_assert_int_eq(verify_with(t, &both, NOW, sub, &why), GW_JWT_BAD_SIGNATURE);
    free(t);
    t = fx_hs256_token(ES_HDR, CLAIMS, S32, S32_LEN);
    ck_assert_int_eq(verify_with(t, &both, NOW, sub, &why), GW_JWT_BAD_SIGNATURE);
    free(t);
    t = fx_signing_input(ES_HDR, CLAIMS);
    ck_assert_ptr_nonnull(HMAC(EVP_sha256(), S32, (int)S32_LEN, (unsigned char *)t, strlen(t), mac, NULL));
    memcpy(mac + 32, mac, 32); /* 64 bytes, the length of an ES256 signature */
    fx_append_sig(t, mac, 64);
    ck_assert_int_eq(verify_with(t, &both, NOW, sub, &why), GW_JWT_BAD_SIGNATURE);
    ck_assert_str_eq(why, "signature does not match");
    free(t);

    /* The classic: HS256 keyed with the public key, as published (JWK) or as DER. The JWKS is
     * never an HMAC key; with the secret configured, HS256 means that secret and nothing else. */
    t = fx_hs256_token("{\"alg\":\"HS256\",\"kid\":\"rsa-1\"}", CLAIMS, rsa_jwk, strlen(rsa_jwk));
    ck_assert_int_eq(verify_with(t, &both, NOW, sub, &why), GW_JWT_BAD_SIGNATURE);
    ck_assert_int_eq(verify_with(t, &only, NOW, sub, &why), GW_JWT_BAD_ALG);
    free(t);
    spki_len = i2d_PUBKEY(rsa_key, &spki);
    ck_assert_int_gt(spki_len, 0);
    t = fx_hs256_token("{\"alg\":\"HS256\",\"kid\":\"rsa-1\"}", CLAIMS, spki, (size_t)spki_len);
    ck_assert_int_eq(verify_with(t, &both, NOW, sub, &why), GW_JWT_BAD_SIGNATURE);
    ck_assert_int_eq(verify_with(t, &only, NOW, sub, &why), GW_JWT_BAD_ALG);
    free(t);
    OPENSSL_free(spki);

    /* alg none and other algorithms, with a kid of the set. */
    t = fx_signing_input("{\"alg\":\"none\",\"kid\":\"rsa-1\"}", CLAIMS);
    strcat(t, "."); /* unsigned */
    ck_assert_int_eq(verify_with(t, &both, NOW, sub, &why), GW_JWT_BAD_ALG);
    ck_assert_str_eq(why, "alg must be HS256, RS256 or ES256");
    ck_assert_int_eq(verify_with(t, &only, NOW, sub, &why), GW_JWT_BAD_ALG);
    free(t);
    ck_assert_int_eq(signed_check("{\"alg\":\"rs256\",\"kid\":\"rsa-1\"}", CLAIMS, rsa_key, &both, &why),
                     GW_JWT_BAD_ALG);
    ck_assert_int_eq(signed_check("{\"alg\":\"PS256\",\"kid\":\"rsa-1\"}", CLAIMS, rsa_key, &both, &why),
                     GW_JWT_BAD_ALG);
    ck_assert_int_eq(signed_check("{\"alg\":\"ES384\",\"kid\":\"ec-1\"}", CLAIMS, ec_key, &both, &why), GW_JWT_BAD_ALG);
}
END_TEST

/* A claims set for u1 with `extra` members. */
static const char *claims_with(const char *extra, char *buf, size_t len)
{
    snprintf(buf, len, "{\"sub\":\"u1\",\"exp\":2000000000%s%s}", extra[0] ? "," : "", extra);
    return buf;
}

START_TEST(test_issuer_audience)
{
    static const struct {
        const char *extra; /* claims besides sub and exp */
        const char *why;   /* the reason when both are checked; NULL: accepted */
        bool iss_ok;       /* accepted with the issuer alone checked */
    } cases[] = {
        {"\"iss\":\"" ISSUER "\",\"aud\":\"" AUDIENCE "\"", NULL, true},
        {"\"iss\":\"" ISSUER "\",\"aud\":[\"account\",\"" AUDIENCE "\"]", NULL, true},
        {"\"iss\":\"" ISSUER "\",\"aud\":[\"" AUDIENCE "\"]", NULL, true},
        {"\"iss\":\"" ISSUER "\",\"aud\":\"account\"", "wrong audience", true},
        {"\"iss\":\"" ISSUER "\",\"aud\":\"" AUDIENCE " \"", "wrong audience", true},
        {"\"iss\":\"" ISSUER "\",\"aud\":[\"account\",\"web\"]", "wrong audience", true},
        {"\"iss\":\"" ISSUER "\",\"aud\":[]", "wrong audience", true},
        {"\"iss\":\"" ISSUER "\",\"aud\":[\"" AUDIENCE "\",1]", "aud is not a string or an array of strings", true},
        {"\"iss\":\"" ISSUER "\",\"aud\":1", "aud is not a string or an array of strings", true},
        {"\"iss\":\"" ISSUER "\"", "aud missing", true},
        {"\"iss\":\"https://idp.example/realms/other\",\"aud\":\"" AUDIENCE "\"", "wrong issuer", false},
        {"\"iss\":\"" ISSUER "/\",\"aud\":\"" AUDIENCE "\"", "wrong issuer", false},
        {"\"iss\":1,\"aud\":\"" AUDIENCE "\"", "iss is not a string", false},
        {"\"aud\":\"" AUDIENCE "\"", "iss missing", false},
    };
    gw_jwt_keys checked = {.secret = S32, .secret_len = S32_LEN, .jwks = jwks, .issuer = ISSUER, .audience = AUDIENCE};
    gw_jwt_keys iss_only = {.jwks = jwks, .issuer = ISSUER}, unchecked = {.jwks = jwks};
    char payload[256], sub[CART_ID_MAX + 1];
    const char *why;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = claims_with(cases[i].extra, payload, sizeof payload);
        gw_jwt_result want = cases[i].why ? GW_JWT_BAD_CLAIMS : GW_JWT_OK;

        ck_assert_int_eq(signed_check(RS_HDR, p, rsa_key, &checked, &why), want);
        ck_assert_str_eq(why, cases[i].why ? cases[i].why : "ok");
        ck_assert_int_eq(signed_check(ES_HDR, p, ec_key, &checked, &why), want);
        /* The same rules for HS256 tokens. */
        char *t = fx_hs256_token(HS256_JWT, p, S32, S32_LEN);
        ck_assert_int_eq(verify_with(t, &checked, NOW, sub, &why), want);
        free(t);
        /* What is not configured is not checked. */
        ck_assert_int_eq(signed_check(RS_HDR, p, rsa_key, &iss_only, &why),
                         cases[i].iss_ok ? GW_JWT_OK : GW_JWT_BAD_CLAIMS);
        ck_assert_int_eq(signed_check(RS_HDR, p, rsa_key, &unchecked, &why), GW_JWT_OK);
    }
}
END_TEST

START_TEST(test_asym_time)
{
    gw_jwt_keys k = {.jwks = jwks};
    char payload[256];
    const char *why;
    int64_t nbf = EXP - 1000;

    ck_assert_int_eq(signed_at(RS_HDR, CLAIMS, rsa_key, &k, EXP + GW_JWT_LEEWAY_S - 1, &why), GW_JWT_OK);
    ck_assert_int_eq(signed_at(RS_HDR, CLAIMS, rsa_key, &k, EXP + GW_JWT_LEEWAY_S, &why), GW_JWT_EXPIRED);
    ck_assert_int_eq(signed_at(ES_HDR, CLAIMS, ec_key, &k, EXP + GW_JWT_LEEWAY_S, &why), GW_JWT_EXPIRED);
    claims_with("\"nbf\":1999999000", payload, sizeof payload);
    ck_assert_int_eq(signed_at(RS_HDR, payload, rsa_key, &k, nbf - GW_JWT_LEEWAY_S - 1, &why), GW_JWT_NOT_YET_VALID);
    ck_assert_int_eq(signed_at(ES_HDR, payload, ec_key, &k, nbf - GW_JWT_LEEWAY_S - 1, &why), GW_JWT_NOT_YET_VALID);
    ck_assert_int_eq(signed_at(ES_HDR, payload, ec_key, &k, nbf - GW_JWT_LEEWAY_S, &why), GW_JWT_OK);
    ck_assert_int_eq(signed_check(RS_HDR, "{\"sub\":\"u1\"}", rsa_key, &k, &why), GW_JWT_BAD_CLAIMS);
    ck_assert_str_eq(why, "exp missing");
}
END_TEST

/* Whether a token's "scope" names a scope: the claim gw_jwt_verify ignores. */
START_TEST(test_scope)
{
    static const struct {
        const char *payload;
        bool has;
    } cases[] = {
        {"{\"sub\":\"u1\",\"exp\":4102444800,\"scope\":\"cart:price\"}", true},
        {"{\"sub\":\"u1\",\"exp\":4102444800,\"scope\":\"openid cart:price profile\"}", true},
        {"{\"sub\":\"u1\",\"exp\":4102444800,\"scope\":\"openid  cart:price\"}", true},
        {"{\"sub\":\"u1\",\"exp\":4102444800,\"scope\":\"cart:prices cart:pric\"}", false},
        {"{\"sub\":\"u1\",\"exp\":4102444800,\"scope\":\"Cart:Price\"}", false},
        {"{\"sub\":\"u1\",\"exp\":4102444800,\"scope\":\"openid,cart:price\"}", false},
        {"{\"sub\":\"u1\",\"exp\":4102444800,\"scope\":[\"cart:price\"]}", false},
        {"{\"sub\":\"u1\",\"exp\":4102444800,\"scp\":\"cart:price\"}", false},
        {"{\"sub\":\"u1\",\"exp\":4102444800,\"scope\":\"\"}", false},
        {"{\"sub\":\"u1\",\"exp\":4102444800}", false},
    };
    char sub[CART_ID_MAX + 1];
    const char *why;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t = make_token(HS256_JWT, cases[i].payload);
        /* Each is a valid token: the scope is another question. */
        ck_assert_int_eq(check_with(t, S32, S32_LEN, NOW, sub, &why), GW_JWT_OK);
        ck_assert_msg(gw_jwt_has_scope(t, strlen(t), "cart:price") == cases[i].has, "%s", cases[i].payload);
        free(t);
    }
    /* What is not a token has no scope. */
    ck_assert(!gw_jwt_has_scope(NULL, 0, "cart:price"));
    ck_assert(!gw_jwt_has_scope("abc", 3, "cart:price"));
    ck_assert(!gw_jwt_has_scope("a.!!!.c", 7, "cart:price"));
    ck_assert(!gw_jwt_has_scope("e30.W10.x", 9, "cart:price")); /* {} . [] */
}
END_TEST

static Suite *jwt_suite(void)
{
    Suite *s = suite_create("jwt");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_valid);
    tcase_add_test(tc, test_secret_sizes);
    tcase_add_test(tc, test_rfc7515_a1);
    tcase_add_test(tc, test_forged);
    tcase_add_test(tc, test_alg);
    tcase_add_test(tc, test_header);
    tcase_add_test(tc, test_expiry);
    tcase_add_test(tc, test_not_before);
    tcase_add_test(tc, test_claims);
    tcase_add_test(tc, test_malformed_shape);
    tcase_add_test(tc, test_malformed_base64);
    tcase_add_test(tc, test_malformed_payload);
    tcase_add_test(tc, test_length_limit);
    tcase_add_test(tc, test_depth_limit);
    tcase_add_test(tc, test_result_names);
    tcase_add_test(tc, test_bearer);
    tcase_add_test(tc, test_scope);
    suite_add_tcase(s, tc);
    tc = tcase_create("rs256_es256");
    tcase_add_unchecked_fixture(tc, make_keys, free_keys);
    tcase_add_test(tc, test_rs256_es256);
    tcase_add_test(tc, test_asym_forged);
    tcase_add_test(tc, test_signature_lengths);
    tcase_add_test(tc, test_kid);
    tcase_add_test(tc, test_alg_confusion);
    tcase_add_test(tc, test_issuer_audience);
    tcase_add_test(tc, test_asym_time);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(jwt_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
