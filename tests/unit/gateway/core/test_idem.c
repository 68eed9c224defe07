#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "idem.h"

/* Expected digests from sha256sum: printf 'u1\nkey-1' | sha256sum, and so on. */
START_TEST(test_known_digests)
{
    char id[CART_EVENT_ID_MAX + 1];

    ck_assert_int_eq(gw_idem_event_id("u1", "key-1", 5, id), 0);
    ck_assert_str_eq(id, "idem-3713f1c7d92b60af054fd998c1f21b165cd50ed6290007624e2f4c0384d02ba6");
    ck_assert(cart_valid_event_id(id, strlen(id)));

    /* The same key for another user is another event. */
    ck_assert_int_eq(gw_idem_event_id("u2", "key-1", 5, id), 0);
    ck_assert_str_eq(id, "idem-dc4a5405eff5c6bb615ac979f378f672250a30b5d4202e3a57e92ddbfe535335");

    /* Only `len` bytes of the key count. */
    ck_assert_int_eq(gw_idem_event_id("u1", "key-1xyz", 5, id), 0);
    ck_assert_str_eq(id, "idem-3713f1c7d92b60af054fd998c1f21b165cd50ed6290007624e2f4c0384d02ba6");
}
END_TEST

START_TEST(test_longest_key)
{
    char key[GW_IDEM_KEY_MAX + 1], id[CART_EVENT_ID_MAX + 1];

    memset(key, '~', sizeof key);
    ck_assert_int_eq(gw_idem_event_id("u1", key, GW_IDEM_KEY_MAX, id), 0);
    ck_assert_str_eq(id, "idem-558a46a318c299c19d072dd110f0b2e2dcc840e1dc18eced28bc32373e411dcd");
    ck_assert_int_eq(gw_idem_event_id("u1", key, GW_IDEM_KEY_MAX + 1, id), -1);
    ck_assert_str_eq(id, "");
}
END_TEST

START_TEST(test_invalid_keys)
{
    char id[CART_EVENT_ID_MAX + 1];

    ck_assert(gw_idem_key_valid("a", 1));
    ck_assert(gw_idem_key_valid("!~{}\"", 5));
    ck_assert(!gw_idem_key_valid("", 0));
    ck_assert(!gw_idem_key_valid("a b", 3));         /* space is not visible */
    ck_assert(!gw_idem_key_valid("a\tb", 3));        /* nor is a tab */
    ck_assert(!gw_idem_key_valid("caf\xc3\xa9", 5)); /* nor anything outside ASCII */
    ck_assert(!gw_idem_key_valid("a\0b", 3));
    ck_assert_int_eq(gw_idem_event_id("u1", "a b", 3, id), -1);
    ck_assert_str_eq(id, "");
}
END_TEST

static Suite *idem_suite(void)
{
    Suite *s = suite_create("idem");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_known_digests);
    tcase_add_test(tc, test_longest_key);
    tcase_add_test(tc, test_invalid_keys);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(idem_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
