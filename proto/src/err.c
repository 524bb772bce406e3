/* err.c - the names and messages of the VEND_E* codes, from the X-macro in err.h. */
#include "vend/err.h"

const char *vend_strerror(int err)
{
    switch (err) {
#define VEND_ERR_CASE(name, value, msg)                                                            \
    case value:                                                                                    \
        return msg;
        VEND_ERR_MAP(VEND_ERR_CASE)
#undef VEND_ERR_CASE
    }
    return "unknown error";
}

const char *vend_errname(int err)
{
    switch (err) {
#define VEND_ERR_CASE(name, value, msg)                                                            \
    case value:                                                                                    \
        return #name;
        VEND_ERR_MAP(VEND_ERR_CASE)
#undef VEND_ERR_CASE
    }
    return "UNKNOWN";
}
