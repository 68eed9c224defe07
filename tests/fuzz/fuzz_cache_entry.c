/*
 * fuzz_cache_entry: cart_from_json, the strict reader of the Redis cache's entries (whatever is
 * stored under cart:{...} reaches it). The oracle is the round trip: an entry that parses renders
 * with cart_to_json, that text parses back to an equal cart (line snapshots included), and renders
 * again to the same text; and the money of any cart it takes is what the cart model keeps.
 *
 * The first input byte picks the reader's user: odd bytes read as user "u1" (a cache hit checks
 * the user), even ones as an unknown user; the rest is the entry.
 */
#include "cartshard/cart.h"
#include "fuzz.h"

static void check_equal(const cart *a, const cart *b)
{
    FUZZ_CHECK(strcmp(a->user_id, b->user_id) == 0);
    FUZZ_CHECK(strcmp(a->cart_id, b->cart_id) == 0);
    FUZZ_CHECK(a->state == b->state);
    FUZZ_CHECK(a->version == b->version);
    FUZZ_CHECK(a->created_at_ms == b->created_at_ms);
    FUZZ_CHECK(a->updated_at_ms == b->updated_at_ms);
    FUZZ_CHECK(a->nitems == b->nitems);
    for (size_t i = 0; i < a->nitems; i++) {
        FUZZ_CHECK(strcmp(a->items[i].sku, b->items[i].sku) == 0);
        FUZZ_CHECK(a->items[i].quantity == b->items[i].quantity);
        FUZZ_CHECK(memcmp(&a->items[i].snap, &b->items[i].snap, sizeof a->items[i].snap) == 0);
    }
}

/* What the cart model keeps holds for any entry the reader takes: valid snapshots, one currency,
 * totals within the limit. */
static void check_money(const cart *c)
{
    const char *currency = cart_currency(c);

    for (size_t i = 0; i < c->nitems; i++) {
        const cart_item *it = &c->items[i];
        FUZZ_CHECK(cart_snapshot_valid(&it->snap));
        FUZZ_CHECK(!it->snap.has_price || strcmp(it->snap.currency, currency) == 0);
        FUZZ_CHECK(cart_line_total(it) <= CART_MONEY_MAX);
    }
    FUZZ_CHECK(cart_subtotal(c) <= CART_MONEY_MAX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cart c, back;
    char *text = NULL, *again = NULL;
    size_t len = 0, len2 = 0;
    cart_status st;

    if (size < 1)
        return 0;
    cart_init(&c, (data[0] & 1) ? "u1" : NULL);
    cart_init(&back, NULL);
    st = cart_from_json(&c, (const char *)data + 1, size - 1);
    if (st != CART_OK) {
        FUZZ_CHECK(st == CART_ERR_INVALID);
        /* A refused entry leaves the cart as it was. */
        FUZZ_CHECK(c.state == CART_NONE && c.nitems == 0 && c.items == NULL);
        goto out;
    }
    FUZZ_CHECK(c.state != CART_NONE);
    FUZZ_CHECK(!(data[0] & 1) || strcmp(c.user_id, "u1") == 0);
    for (size_t i = 1; i < c.nitems; i++)
        FUZZ_CHECK(strcmp(c.items[i - 1].sku, c.items[i].sku) < 0);
    check_money(&c);

    text = cart_to_json(&c, &len);
    FUZZ_CHECK(text != NULL);
    FUZZ_CHECK(len == strlen(text));
    st = cart_from_json(&back, text, len);
    if (st != CART_OK)
        fprintf(stderr, "fuzz_cache_entry: cart_to_json wrote what cart_from_json refuses:\n%s\n", text);
    FUZZ_CHECK(st == CART_OK);
    check_equal(&c, &back);
    again = cart_to_json(&back, &len2);
    FUZZ_CHECK(again != NULL && len2 == len && memcmp(again, text, len) == 0);
out:
    free(text);
    free(again);
    cart_cleanup(&c);
    cart_cleanup(&back);
    return 0;
}
