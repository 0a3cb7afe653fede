/*
 * Self-check for xstate_shim.c: trace a child, read its XSAVE area through a
 * short buffer (as UML does) and write it back. Without the shim a host kernel
 * >= 5.14 refuses the short write (EFAULT); with the shim it must succeed.
 * Exit 0: the short write worked; 1: it failed (errno printed); 2: set-up error.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef NT_X86_XSTATE
#define NT_X86_XSTATE 0x202
#endif

int main(void)
{
	unsigned char buf[576]; /* legacy FXSAVE area + XSAVE header: what an old UML keeps */
	struct iovec iov = { buf, sizeof(buf) };
	int status, rc = 0;
	pid_t child = fork();

	if (child < 0)
		return 2;
	if (child == 0) {
		ptrace(PTRACE_TRACEME, 0, NULL, NULL);
		raise(SIGSTOP);
		_exit(0);
	}
	if (waitpid(child, &status, 0) < 0 || !WIFSTOPPED(status))
		return 2;
	if (ptrace(PTRACE_GETREGSET, child, (void *)NT_X86_XSTATE, &iov) < 0) {
		printf("GETREGSET failed: %s\n", strerror(errno));
		rc = 2;
	} else if (ptrace(PTRACE_SETREGSET, child, (void *)NT_X86_XSTATE, &iov) < 0) {
		printf("short SETREGSET(NT_X86_XSTATE, %zu bytes) failed, errno = %d (%s)\n",
		       iov.iov_len, errno, strerror(errno));
		rc = 1;
	} else {
		printf("short SETREGSET(NT_X86_XSTATE, %zu bytes) ok\n", iov.iov_len);
	}
	kill(child, SIGKILL);
	waitpid(child, &status, 0);
	return rc;
}
