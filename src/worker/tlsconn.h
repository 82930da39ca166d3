/*
 * tlsconn: one TLS connection's OpenSSL side in a worker. Non-blocking: a
 * call that cannot go on says whether it waits for the socket to become
 * readable or writable, and the caller (conn_tls.c) sets its epoll mask from
 * that. The SSL object comes from a context the master built
 * (common/tlsctx.h) and the worker inherited: nothing here opens a file.
 */
#ifndef EM_TLSCONN_H
#define EM_TLSCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <openssl/ssl.h>

struct tlsconn;

/* What a call did. */
enum tlsconn_rc {
	TLSC_DONE,        /* the handshake is complete / bytes were moved */
	TLSC_WANT_READ,   /* wait until the socket is readable, then call again */
	TLSC_WANT_WRITE,  /* wait until it is writable */
	TLSC_CLOSED,      /* the client's close_notify (or its EOF): its half-close */
	TLSC_FAILED,      /* broken: close without a close_notify */
};

/* Why a handshake failed: the scoreboard's classes. */
enum tlsconn_failure { TLSC_FAIL_PROTOCOL, TLSC_FAIL_CERT, TLSC_FAIL_OTHER };

/* A server-side connection on fd (not taken: the caller closes it). NULL when out of memory. */
struct tlsconn *tlsconn_new(SSL_CTX *ctx, int fd);

/*
 * A server-side connection on fd whose first LEN bytes were read from the
 * socket already (what followed a PROXY header in its read: the start of
 * the ClientHello). OpenSSL reads them first, then the socket, through a
 * small filter in front of the socket's BIO; they are copied. Not taken:
 * fd. NULL when out of memory.
 *
 * No byte is ever left where epoll cannot see it: the filter hands out
 * what it holds whenever OpenSSL reads, so a handshake step ends with the
 * bytes consumed or parsed (WANT_READ then comes from the socket itself),
 * or waiting to write, which epoll reports. The client's Finished cannot
 * be among them (it answers our first flight, sent after they were read),
 * so the filter is empty once the handshake is complete, and
 * tlsconn_pending stays exact from then on.
 */
struct tlsconn *tlsconn_new_prefixed(SSL_CTX *ctx, int fd, const void *prefix, size_t len);

/* Frees it; sends our close_notify first, once, when the session is up and sound. */
void tlsconn_free(struct tlsconn *t);

/* One step of the handshake. */
enum tlsconn_rc tlsconn_handshake(struct tlsconn *t);

/* Why the handshake failed, after TLSC_FAILED; clears OpenSSL's error queue. */
enum tlsconn_failure tlsconn_failure(struct tlsconn *t);

/*
 * Whether the client has sent no byte of TLS at all: a connection that
 * ends so was a bare connect (a balancer's check), not a failed handshake.
 */
bool tlsconn_received_nothing(const struct tlsconn *t);

/*
 * Whether the client's side of the handshake was complete (its Finished
 * read) and only our session tickets were left to send: a client that
 * resets then, as a balancer's TLS check does once it is through, did
 * not fail its handshake.
 */
bool tlsconn_client_finished(const struct tlsconn *t);

/* Reads decrypted bytes into buf; *n is how many when TLSC_DONE. */
enum tlsconn_rc tlsconn_read(struct tlsconn *t, void *buf, size_t len, size_t *n);

/* Writes (part of) buf; *n is how much was taken when TLSC_DONE. */
enum tlsconn_rc tlsconn_write(struct tlsconn *t, const void *buf, size_t len, size_t *n);

/* Whether OpenSSL holds bytes already read from the socket: epoll will not tell of them. */
bool tlsconn_pending(const struct tlsconn *t);

/* Sends our close_notify (once); the socket stays open for the client's. */
void tlsconn_shutdown(struct tlsconn *t);

/* After the handshake: whether a ticket resumed the session, the version, ALPN and SNI. */
bool tlsconn_resumed(const struct tlsconn *t);
const char *tlsconn_version(const struct tlsconn *t);
void tlsconn_alpn(const struct tlsconn *t, const unsigned char **p, unsigned *len);
const char *tlsconn_sni(const struct tlsconn *t);

#endif
