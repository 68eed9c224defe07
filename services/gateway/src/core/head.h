/*
 * head.h: the checks of an HTTP/1.x request head that h2o's parser does not make (RFC 9112), run
 * on the head's raw bytes: h2o keeps only the last Host and one of Content-Length and
 * Transfer-Encoding, so its parsed request cannot show a second Host or a request framed two ways.
 * Pure: no I/O, no allocation; front.c runs it on every HTTP/1.x request (docs/internals/http-front.md).
 */
#ifndef GW_HEAD_H
#define GW_HEAD_H

#include <stddef.h>

typedef enum gw_head_verdict {
    GW_HEAD_OK = 0,
    GW_HEAD_TWO_FRAMINGS,    /* Content-Length with Transfer-Encoding, or Content-Lengths that differ:
                              * 400, and the connection is closed (RFC 9112 section 6.3) */
    GW_HEAD_NO_HOST,         /* an HTTP/1.1 request without Host: 400 (RFC 9112 section 3.2) */
    GW_HEAD_HOSTS,           /* more than one Host field: 400 */
    GW_HEAD_FIELD_TOO_LARGE, /* one field line longer than field_max bytes: 431 (RFC 6585) */
    GW_HEAD_FIELDS_TOO_LARGE /* the field lines together longer than total_max bytes: 431 */
} gw_head_verdict;

/*
 * Checks the request head at head[0..len): the request line, the field lines, an empty line (each
 * line ending in LF or CRLF); bytes after the empty line (a body, a next request) are not read.
 * A field line's size is its bytes without the line ending, its continuation lines (obsolete line
 * folding) included. A head without its empty line within len is not judged: GW_HEAD_OK. When
 * several checks fail, the first in the order of the enum is returned.
 */
gw_head_verdict gw_head_check(const char *head, size_t len, size_t field_max, size_t total_max);

/* What a verdict says, for the problem's detail: "" for GW_HEAD_OK. */
const char *gw_head_verdict_detail(gw_head_verdict v);

#endif
