#include "cartshard/fmt.h"

#include <stdlib.h>
#include <string.h>

size_t cart_int_format(int64_t v, char buf[CART_INT_BUFSZ])
{
    char tmp[CART_INT_BUFSZ];
    size_t n = 0;
    /* The magnitude as unsigned, so that INT64_MIN has one too. */
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

    do {
        tmp[sizeof tmp - 1 - n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        tmp[sizeof tmp - 1 - n++] = '-';
    memcpy(buf, tmp + sizeof tmp - n, n);
    return n;
}

bool cart_buf_reserve(cart_buf *b, size_t more)
{
    size_t need = b->len + more, cap;
    char *nb;

    if (b->oom)
        return false;
    if (need <= b->cap)
        return true;
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    nb = realloc(b->buf, cap);
    if (nb == NULL) {
        b->oom = true;
        return false;
    }
    b->buf = nb;
    b->cap = cap;
    return true;
}

int cart_grow(void **arr, size_t n, size_t *cap, size_t size, size_t first)
{
    size_t ncap;
    void *na;

    if (n < *cap)
        return 0;
    ncap = *cap ? *cap * 2 : first;
    na = realloc(*arr, ncap * size);
    if (na == NULL)
        return -1;
    *arr = na;
    *cap = ncap;
    return 0;
}
