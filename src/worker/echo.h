/*
 * echo: the protocol's only transform, a pure function with no I/O.
 */
#ifndef EM_ECHO_H
#define EM_ECHO_H

#include <stddef.h>

/* Turns ASCII a-z into A-Z in place; every other byte stays as it is. */
void echo_upper(unsigned char *buf, size_t len);

#endif
