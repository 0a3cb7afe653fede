/*
 * The three glibc 2.38 symbols Debian 13's User-Mode-Linux binary needs, for Debian 12's
 * glibc 2.36 (see snapd_vss/testing/guest_kernels.py).
 *
 * C23's strtol/strtoul/sscanf differ from the older ones only in accepting "0b"
 * binary prefixes, which the UML kernel's command-line parsing does not use.
 * Linked with glibc238_shim.map so the symbols carry the version GLIBC_2.38.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

long c23_strtol(const char *s, char **end, int base) { return strtol(s, end, base); }

unsigned long c23_strtoul(const char *s, char **end, int base) { return strtoul(s, end, base); }

int c23_sscanf(const char *s, const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    int n = vsscanf(s, format, ap);
    va_end(ap);
    return n;
}

__asm__(".symver c23_strtol,__isoc23_strtol@@GLIBC_2.38");
__asm__(".symver c23_strtoul,__isoc23_strtoul@@GLIBC_2.38");
__asm__(".symver c23_sscanf,__isoc23_sscanf@@GLIBC_2.38");
