/*
 * fuzz_notice: st_notice_decode on any bytes (cart-stats reads change notices from NATS, which
 * anyone allowed to publish there may write). Oracles: it never crashes; a notice that decodes has
 * a valid event_id, a cart_id of at most 64 visible characters, counters of 0 or 1 (units_added
 * any quantity >= 0) and a sku exactly when it added units; one that does not decode says why in
 * printable ASCII (the reason goes into a log line).
 */
#define _POSIX_C_SOURCE 200809L
#include "cartshard/event.h"
#include "fuzz.h"
#include "stats_core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    st_notice n;
    char err[160] = "";

    if (st_notice_decode((const char *)data, size, &n, err, sizeof err) != CART_OK) {
        size_t len = strnlen(err, sizeof err);
        FUZZ_CHECK(len > 0 && len < sizeof err);
        for (size_t i = 0; i < len; i++)
            FUZZ_CHECK(err[i] >= 0x20 && err[i] <= 0x7e);
        return 0;
    }
    FUZZ_CHECK(cart_valid_event_id(n.event_id, strlen(n.event_id)));
    FUZZ_CHECK(strlen(n.cart_id) >= 1 && strlen(n.cart_id) <= ST_CART_ID_MAX);
    for (int i = 0; i < ST_NCOUNTERS; i++) {
        if (i == ST_UNITS_ADDED)
            FUZZ_CHECK(n.add[i] >= 0 && n.add[i] <= INT32_MAX);
        else
            FUZZ_CHECK(n.add[i] == 0 || n.add[i] == 1);
    }
    FUZZ_CHECK((n.add[ST_UNITS_ADDED] > 0) == (n.sku[0] != '\0'));
    FUZZ_CHECK(n.sku[0] == '\0' || cart_valid_id(n.sku, strlen(n.sku)));
    FUZZ_CHECK(n.currency[0] == '\0' || cart_valid_currency(n.currency, strlen(n.currency)));
    FUZZ_CHECK(n.value >= 0 && (n.currency[0] != '\0' || n.value == 0));
    return 0;
}
