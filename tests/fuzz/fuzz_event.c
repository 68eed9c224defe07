/*
 * fuzz_event: cart_event_decode on any bytes (the cart-store reads events from NATS, and a dead
 * letter's reason goes into a header), and the codec's round trip as the oracle: an event that
 * decodes must encode, decode back to an equal event (its line snapshot included), and encode
 * again to the same text. And the domains as the second oracle: a decoded event's snapshot is
 * valid, and the cart model applies it to an empty cart without calling it malformed unless its
 * quantity is outside the setting's range (cart_event_check_quantity); whatever it applies keeps
 * the money within its limit.
 */
#define _POSIX_C_SOURCE 200809L
#include "cartshard/cart.h"
#include "cartshard/event.h"
#include "fuzz.h"

static void check_equal(const cart_event *a, const cart_event *b)
{
    FUZZ_CHECK(strcmp(a->event_id, b->event_id) == 0);
    FUZZ_CHECK(a->type == b->type);
    FUZZ_CHECK(strcmp(a->user_id, b->user_id) == 0);
    FUZZ_CHECK(a->occurred_at_ms == b->occurred_at_ms);
    FUZZ_CHECK(strcmp(a->sku, b->sku) == 0);
    FUZZ_CHECK(a->quantity == b->quantity);
    FUZZ_CHECK(a->has_expected_version == b->has_expected_version);
    FUZZ_CHECK(!a->has_expected_version || a->expected_version == b->expected_version);
    FUZZ_CHECK(strcmp(a->trace, b->trace) == 0);
    FUZZ_CHECK(strcmp(a->request_fingerprint, b->request_fingerprint) == 0);
    FUZZ_CHECK(memcmp(&a->snap, &b->snap, sizeof a->snap) == 0);
}

/* The reason of a dead letter travels in a header: printable ASCII, NUL-terminated in its buffer. */
static void check_reason(const char *err, size_t errlen)
{
    size_t n = strnlen(err, errlen);

    FUZZ_CHECK(n < errlen);
    FUZZ_CHECK(n > 0);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(err[i] >= 0x20 && err[i] <= 0x7e);
}

/* The decoder and the cart model agree on what is malformed. */
static void check_model(const cart_event *ev)
{
    static const cart_limits lim = {999, 100};
    char err[160];
    cart c;
    cart_outcome o;
    bool in_range = cart_event_check_quantity(ev, lim.max_quantity, err, sizeof err) == CART_OK;

    FUZZ_CHECK(cart_snapshot_valid(&ev->snap));
    if (!in_range) {
        FUZZ_CHECK(strncmp(err, "data.quantity: ", 15) == 0);
        check_reason(err, sizeof err);
    }
    cart_init(&c, ev->user_id);
    FUZZ_CHECK(cart_apply(&c, ev, &lim, 1795341600000LL, "0af76519-16cd-43dd-8448-eb211c80319c", &o) == CART_OK);
    FUZZ_CHECK((o.status == CART_ERR_INVALID) == !in_range);
    FUZZ_CHECK(cart_subtotal(&c) <= CART_MONEY_MAX);
    cart_cleanup(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cart_event ev, back;
    char err[160];
    char small[8];
    char *text = NULL, *again = NULL;
    size_t len = 0, len2 = 0;
    cart_status st;

    st = cart_event_decode((const char *)data, size, &ev, err, sizeof err);
    if (st != CART_OK) {
        FUZZ_CHECK(st == CART_ERR_INVALID);
        check_reason(err, sizeof err);
        /* A short buffer gets a cut reason, still terminated. */
        FUZZ_CHECK(cart_event_decode((const char *)data, size, &ev, small, sizeof small) == CART_ERR_INVALID);
        FUZZ_CHECK(strnlen(small, sizeof small) < sizeof small);
        return 0;
    }
    FUZZ_CHECK(cart_valid_event_id(ev.event_id, strlen(ev.event_id)));
    FUZZ_CHECK(cart_valid_id(ev.user_id, strlen(ev.user_id)));
    FUZZ_CHECK(cart_event_type_name(ev.type) != NULL);
    check_model(&ev);

    st = cart_event_encode(&ev, &text, &len);
    FUZZ_CHECK(st == CART_OK);
    FUZZ_CHECK(len == strlen(text));
    st = cart_event_decode(text, len, &back, err, sizeof err);
    if (st != CART_OK)
        fprintf(stderr, "fuzz_event: re-encoded event does not decode: %s\n%s\n", err, text);
    FUZZ_CHECK(st == CART_OK);
    check_equal(&ev, &back);
    FUZZ_CHECK(cart_event_encode(&back, &again, &len2) == CART_OK);
    FUZZ_CHECK(len2 == len && memcmp(again, text, len) == 0);
    free(text);
    free(again);
    return 0;
}
