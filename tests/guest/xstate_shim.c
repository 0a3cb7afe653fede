/*
 * LD_PRELOAD shim for User-Mode-Linux on hosts with a large XSAVE area.
 *
 * Stock UML saves and restores a guest process's FPU state with
 * PTRACE_GETREGSET / PTRACE_SETREGSET(NT_X86_XSTATE) using a fixed-size buffer.
 * Host kernels >= 5.14 insist that PTRACE_SETREGSET(NT_X86_XSTATE) is given the
 * *whole* XSAVE area (its size depends on the CPU: AVX-512 / AMX make it large);
 * a shorter buffer gives EFAULT and UML dies with
 * "ptrace set fp regs failed, errno = 14".
 *
 * This shim wraps ptrace(): a PTRACE_SETREGSET(NT_X86_XSTATE) with a buffer
 * shorter than the host's XSAVE area is turned into: read the traced process's
 * full current state, overlay the bytes UML gave us at the start, write the full
 * buffer back. The state UML cannot hold (the tail of the area) is kept as the
 * process currently has it. PTRACE_GETREGSET with a short buffer already works
 * (the kernel truncates), so it is passed through.
 *
 * The full size comes from CPUID leaf 0xD (EBX: size for the features enabled in
 * XCR0; ECX: for all supported ones); the kernel's own answer to a GETREGSET with
 * a buffer of that size is what is written back.
 * Set SNAPD_VSS_XSTATE_SHIM_DEBUG=1 to log each rewrite to stderr.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifndef NT_X86_XSTATE
#define NT_X86_XSTATE 0x202
#endif

typedef long (*ptrace_fn)(int, pid_t, void *, void *);

static ptrace_fn real_ptrace_fn(void)
{
	static ptrace_fn fn;
	if (!fn)
		fn = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");
	return fn;
}

static size_t host_xstate_size(void)
{
	static size_t size;
	unsigned int eax, ebx, ecx, edx;
	if (size)
		return size;
	if (!__get_cpuid_count(0xd, 0, &eax, &ebx, &ecx, &edx))
		return 0;
	size = ebx > ecx ? ebx : ecx;
	return size;
}

static int debug_enabled(void)
{
	const char *v = getenv("SNAPD_VSS_XSTATE_SHIM_DEBUG");
	return v && *v && strcmp(v, "0") != 0;
}

static long set_full_xstate(ptrace_fn real, pid_t pid, struct iovec *given)
{
	size_t full = host_xstate_size();
	struct iovec iov;
	unsigned char *buf;
	long ret;

	if (full == 0 || given->iov_len >= full)
		return real(PTRACE_SETREGSET, pid, (void *)NT_X86_XSTATE, given);

	buf = calloc(1, full);
	if (!buf) {
		errno = ENOMEM;
		return -1;
	}
	iov.iov_base = buf;
	iov.iov_len = full;
	ret = real(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &iov);
	if (ret < 0) {
		int saved = errno;
		free(buf);
		errno = saved;
		return ret;
	}
	/* iov.iov_len is now what the kernel actually has: the size it wants back. */
	if (given->iov_len < iov.iov_len)
		memcpy(buf, given->iov_base, given->iov_len);
	else
		memcpy(buf, given->iov_base, iov.iov_len);
	if (debug_enabled())
		fprintf(stderr, "xstate_shim: pid %d SETREGSET %zu -> %zu bytes\n",
			(int)pid, given->iov_len, iov.iov_len);
	ret = real(PTRACE_SETREGSET, pid, (void *)NT_X86_XSTATE, &iov);
	{
		int saved = errno;
		free(buf);
		errno = saved;
	}
	return ret;
}

long ptrace(enum __ptrace_request request, ...)
{
	va_list ap;
	pid_t pid;
	void *addr;
	void *data;
	ptrace_fn real = real_ptrace_fn();

	va_start(ap, request);
	pid = va_arg(ap, pid_t);
	addr = va_arg(ap, void *);
	data = va_arg(ap, void *);
	va_end(ap);

	if (!real) {
		errno = ENOSYS;
		return -1;
	}
	if ((int)request == PTRACE_SETREGSET && (unsigned long)addr == NT_X86_XSTATE && data)
		return set_full_xstate(real, pid, (struct iovec *)data);
	return real((int)request, pid, addr, data);
}
