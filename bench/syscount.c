/* A preloaded library that counts a server's socket and poll calls in a
 * native run, without slowing it as strace does (a ptrace stop per call
 * changes which calls a loop makes: how many datagrams wait at each
 * wake-up depends on timing). bench/udp_count.sh uses it.
 *
 *   SYSCOUNT_FILE=F LD_PRELOAD=build/bench/libsyscount.so SERVER ...
 *
 * F (created) holds one counter per call, as unsigned longs in the order
 * of the enum below, updated in place: read it whenever (od -tu8).
 * Calls made through glibc from the program or its
 * libraries are counted; glibc's own internal calls are not. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

enum { C_RECVFROM, C_RECVMSG, C_RECVMMSG, C_SENDTO, C_SEND, C_SENDMSG,
       C_SENDMMSG, C_EPOLL_WAIT, C_EPOLL_PWAIT, C_N };

static unsigned long *counts;

__attribute__((constructor)) static void syscount_init(void)
{
  const char *f = getenv("SYSCOUNT_FILE");
  int fd = f ? open(f, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
  if (fd < 0 || ftruncate(fd, C_N * sizeof *counts) < 0)
    return;
  counts = mmap(NULL, C_N * sizeof *counts, PROT_READ | PROT_WRITE,
                MAP_SHARED, fd, 0);
  if (counts == MAP_FAILED)
    counts = NULL;
  close(fd);
}

#define NEXT(name) \
  static __typeof__(name) *next; \
  if (!next) \
    next = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)
#define COUNT(i) \
  if (counts) \
    counts[i]++

ssize_t recvfrom(int fd, void *buf, size_t len, int flags,
                 struct sockaddr *sa, socklen_t *alen)
{
  NEXT(recvfrom);
  COUNT(C_RECVFROM);
  return next(fd, buf, len, flags, sa, alen);
}

ssize_t recvmsg(int fd, struct msghdr *m, int flags)
{
  NEXT(recvmsg);
  COUNT(C_RECVMSG);
  return next(fd, m, flags);
}

int recvmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags,
             struct timespec *t)
{
  NEXT(recvmmsg);
  COUNT(C_RECVMMSG);
  return next(fd, v, n, flags, t);
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags,
               const struct sockaddr *sa, socklen_t alen)
{
  NEXT(sendto);
  COUNT(C_SENDTO);
  return next(fd, buf, len, flags, sa, alen);
}

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
  NEXT(send);
  COUNT(C_SEND);
  return next(fd, buf, len, flags);
}

ssize_t sendmsg(int fd, const struct msghdr *m, int flags)
{
  NEXT(sendmsg);
  COUNT(C_SENDMSG);
  return next(fd, m, flags);
}

int sendmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags)
{
  NEXT(sendmmsg);
  COUNT(C_SENDMMSG);
  return next(fd, v, n, flags);
}

int epoll_wait(int ep, struct epoll_event *ev, int n, int ms)
{
  NEXT(epoll_wait);
  COUNT(C_EPOLL_WAIT);
  return next(ep, ev, n, ms);
}

int epoll_pwait(int ep, struct epoll_event *ev, int n, int ms,
                const sigset_t *mask)
{
  NEXT(epoll_pwait);
  COUNT(C_EPOLL_PWAIT);
  return next(ep, ev, n, ms, mask);
}
