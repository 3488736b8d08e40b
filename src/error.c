/* Errors: one table maps the OS's errno values to tapio's codes, names and
 * messages, so every platform reports the same values. */
#include "tapio_int.h"

#include <errno.h>
#include <netdb.h>

/* X(errno name, message) for every error the OS can give us. */
#define TAPIO_ERRNO_MAP(X)                                   \
  X(EPERM, "operation not permitted")                        \
  X(ENOENT, "no such file or directory")                     \
  X(EINTR, "interrupted system call")                        \
  X(EIO, "i/o error")                                        \
  X(EBADF, "bad file descriptor")                            \
  X(EAGAIN, "resource temporarily unavailable")              \
  X(ENOMEM, "not enough memory")                             \
  X(EACCES, "permission denied")                             \
  X(EBUSY, "resource busy or locked")                        \
  X(EEXIST, "file already exists")                           \
  X(ENOTDIR, "not a directory")                              \
  X(EINVAL, "invalid argument")                              \
  X(ENFILE, "file table overflow")                           \
  X(EMFILE, "too many open files")                           \
  X(ENOSPC, "no space left on device")                       \
  X(EPIPE, "broken pipe")                                    \
  X(ENAMETOOLONG, "name too long")                           \
  X(ENOSYS, "function not implemented")                      \
  X(ENOTSOCK, "socket operation on non-socket")              \
  X(EMSGSIZE, "message too long")                            \
  X(EPROTONOSUPPORT, "protocol not supported")               \
  X(ENOTSUP, "operation not supported")                      \
  X(EAFNOSUPPORT, "address family not supported")            \
  X(EADDRINUSE, "address already in use")                    \
  X(EADDRNOTAVAIL, "address not available")                  \
  X(ENETDOWN, "network is down")                             \
  X(ENETUNREACH, "network is unreachable")                   \
  X(ECONNABORTED, "software caused connection abort")        \
  X(ECONNRESET, "connection reset by peer")                  \
  X(ENOBUFS, "no buffer space available")                    \
  X(EISCONN, "socket is already connected")                  \
  X(ENOTCONN, "socket is not connected")                     \
  X(ETIMEDOUT, "connection timed out")                       \
  X(ECONNREFUSED, "connection refused")                      \
  X(EHOSTUNREACH, "host is unreachable")                     \
  X(EALREADY, "connection already in progress")              \
  X(ECANCELED, "operation canceled")                         \
  X(ESHUTDOWN, "cannot send after transport endpoint shutdown") \
  X(ECHILD, "no child processes")                            \
  X(ESRCH, "no such process")                                \
  X(E2BIG, "argument list too long")                         \
  X(ENOPROTOOPT, "protocol not available")                   \
  X(EPROTOTYPE, "protocol wrong type for socket")            \
  X(ELOOP, "too many symbolic links encountered")            \
  X(EROFS, "read-only file system")

/* X(name, message) for tapio's own codes. */
#define TAPIO_OWN_MAP(X)                                     \
  X(EOF, "end of file")                                      \
  X(ECLOSED, "handle is closing or closed")                  \
  X(ERUNNING, "loop is already running")                     \
  X(EBUFFER, "get_buffer returned an empty buffer")          \
  X(ECALLBACK, "error raised in a callback")                 \
  X(ESYSTEM, "system error reported by libev")               \
  X(EVIRTUAL, "real I/O is refused on a virtual-clock loop") \
  X(ESPIN, "the loop kept busy at one virtual time (its step limit)") \
  X(EAI_NONAME, "unknown node or service")                   \
  X(EAI_AGAIN, "temporary failure in name resolution")       \
  X(EAI_FAIL, "permanent failure in name resolution")        \
  X(EAI_FAMILY, "address family not supported by resolver")  \
  X(EAI_SERVICE, "service not available for socket type")    \
  X(EAI_SOCKTYPE, "protocol not supported for socket type")  \
  X(ETLS, "TLS protocol error")                              \
  X(ETLS_EXPIRED, "certificate has expired")                 \
  X(ETLS_NOT_YET_VALID, "certificate is not yet valid")      \
  X(ETLS_HOSTNAME, "certificate does not match the host name") \
  X(ETLS_UNKNOWN_CA, "certificate issuer is unknown or not trusted") \
  X(ETLS_SELF_SIGNED, "self-signed certificate")             \
  X(ETLS_VERIFY, "certificate verify failed")                \
  X(ETLS_NO_CERT, "peer did not present a certificate")      \
  X(ETLS_VERSION, "no TLS protocol version in common")       \
  X(ETLS_CIPHER, "no cipher in common, TLS handshake refused") \
  X(EUNKNOWN, "unknown error")

int tapio__from_errno(int err) {
  switch (err) {
#define X(name, msg) \
  case name:         \
    return TAPIO_##name;
    TAPIO_ERRNO_MAP(X)
#undef X
#if EWOULDBLOCK != EAGAIN
  case EWOULDBLOCK:
    return TAPIO_EAGAIN;
#endif
#if EOPNOTSUPP != ENOTSUP
  case EOPNOTSUPP:
    return TAPIO_ENOTSUP;
#endif
  default:
    return err == 0 ? 0 : TAPIO_EUNKNOWN;
  }
}

int tapio_error_from_errno(int err) { return tapio__from_errno(err); }

int tapio__from_gai(int err) {
  switch (err) {
  case 0:
    return 0;
  case EAI_NONAME:
#ifdef EAI_NODATA
  case EAI_NODATA:
#endif
    return TAPIO_EAI_NONAME;
  case EAI_AGAIN:
    return TAPIO_EAI_AGAIN;
  case EAI_FAIL:
    return TAPIO_EAI_FAIL;
  case EAI_FAMILY:
#ifdef EAI_ADDRFAMILY
  case EAI_ADDRFAMILY:
#endif
    return TAPIO_EAI_FAMILY;
  case EAI_SERVICE:
    return TAPIO_EAI_SERVICE;
  case EAI_SOCKTYPE:
    return TAPIO_EAI_SOCKTYPE;
  case EAI_MEMORY:
    return TAPIO_ENOMEM;
  case EAI_SYSTEM:
    return tapio__from_errno(errno);
  default:
    return TAPIO_EAI_FAIL;
  }
}

const char *tapio_strerror(int code) {
  switch (code) {
  case TAPIO_OK:
    return "success";
#define X(name, msg)  \
  case TAPIO_##name: \
    return msg;
    TAPIO_ERRNO_MAP(X)
    TAPIO_OWN_MAP(X)
#undef X
  default:
    return "unknown error";
  }
}

const char *tapio_errname(int code) {
  switch (code) {
  case TAPIO_OK:
    return "OK";
#define X(name, msg)  \
  case TAPIO_##name: \
    return #name;
    TAPIO_ERRNO_MAP(X)
    TAPIO_OWN_MAP(X)
#undef X
  default:
    return "EUNKNOWN";
  }
}
