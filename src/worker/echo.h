/*
 * echo: the protocol's transforms, pure functions with no I/O: the
 * upper-case echo, and the line whoami answers with.
 */
#ifndef EM_ECHO_H
#define EM_ECHO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Turns ASCII a-z into A-Z in place; every other byte stays as it is. */
void echo_upper(unsigned char *buf, size_t len);

/* Who answered a client: what mode = "whoami" tells it. */
struct echo_whoami {
	const char *instance;     /* name, or the host name */
	const char *host;
	long pid;                 /* the worker's */
	int slot;
	unsigned generation;
	const struct sockaddr_storage *client;  /* the real client: the PROXY header's when there was one */
	const struct sockaddr_storage *server;  /* the address that answered */
	int proxy_version;        /* 0: no PROXY header */
	const struct sockaddr_storage *balancer; /* the header's sender; NULL: none */
	const void *authority;    /* raw bytes from the header, or NULL */
	size_t authority_len;
	const void *unique_id;
	size_t unique_id_len;
	const char *tls;          /* the TLS version ("TLSv1.3"); NULL: not TLS */
	const void *alpn;         /* the ALPN protocol chosen, or NULL */
	size_t alpn_len;
	const char *sni;          /* the server name the client asked for, or NULL */
};

/* Room for the longest line echo_whoami can write, NUL included. */
#define ECHO_WHOAMI_MAX 2048

/*
 * Writes one line of key=value pairs ending in "\n" into buf (len >=
 * ECHO_WHOAMI_MAX) and returns its length. Printable ASCII only: bytes of
 * the header's values outside 0x21..0x7e, and '%' itself, become %XX.
 */
size_t echo_whoami(char *buf, size_t len, const struct echo_whoami *who);

#endif
