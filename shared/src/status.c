#include "cartshard/status.h"

const char *cart_status_str(cart_status st)
{
    switch (st) {
    case CART_OK:
        return "ok";
    case CART_ERR_NOMEM:
        return "out of memory";
    case CART_ERR_INVALID:
        return "invalid";
    case CART_ERR_NOT_FOUND:
        return "not found";
    case CART_ERR_CONFLICT:
        return "conflict";
    case CART_ERR_PRECONDITION:
        return "precondition failed";
    case CART_ERR_LIMIT:
        return "over a limit";
    case CART_ERR_CURRENCY:
        return "currency mismatch";
    case CART_ERR_OVERFLOW:
        return "buffer too small";
    case CART_ERR_UNAVAILABLE:
        return "unavailable";
    case CART_ERR_IO:
        return "i/o error";
    }
    return "unknown status";
}

int cart_status_http(cart_status st)
{
    switch (st) {
    case CART_OK:
        return 200;
    case CART_ERR_INVALID:
        return 400;
    case CART_ERR_NOT_FOUND:
        return 404;
    case CART_ERR_CONFLICT:
        return 409;
    case CART_ERR_PRECONDITION:
        return 412;
    case CART_ERR_LIMIT:
    case CART_ERR_CURRENCY:
        return 422;
    case CART_ERR_UNAVAILABLE:
        return 503;
    case CART_ERR_NOMEM:
    case CART_ERR_OVERFLOW:
    case CART_ERR_IO:
        break;
    }
    return 500;
}
