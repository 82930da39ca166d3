/*
 * proxy: the PROXY protocol header a load balancer sends before a client's
 * bytes (haproxy's doc/proxy-protocol.txt), versions 1 (text) and 2
 * (binary). A pure, incremental parser: no I/O, no allocation, no clock.
 * The caller feeds it what it reads, in any pieces; it keeps at most one
 * header in a fixed buffer of its own and tells when the header is done,
 * how many of the bytes just fed were the header's (the rest are the
 * client's data), or why it refused it.
 *
 * Strict by design: a balancer that speaks the protocol writes it exactly,
 * and anything else is a client that must not pick its own address.
 *
 * v1: "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" or "PROXY UNKNOWN...\r\n",
 * at most 107 bytes with the CRLF; single spaces; dotted IPv4 without
 * leading zeros, octets <= 255; ports 0..65535 without leading zeros; the
 * addresses must be of the family named.
 *
 * v2: 12-byte signature, version 2, command LOCAL or PROXY, one of the
 * seven family/transport pairs the spec lists, a length of at most
 * PROXY_V2_MAX_LEN (a documented bound of ours: longer headers are refused
 * as too long), the address block whole, TLVs walked with bounds checks,
 * CRC32C verified when a CRC32C TLV is present (which must be 4 bytes),
 * UNIQUE_ID at most 128 bytes, AUTHORITY kept (cut at PROXY_AUTHORITY_MAX).
 * LOCAL (a balancer's own health check) and the UNSPEC and UNIX families
 * carry no client address: has_addr is false and the caller keeps the
 * socket's real addresses.
 */
#ifndef EM_PROXY_H
#define EM_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PROXY_V1_MAX        107   /* by the spec, CRLF included */
#define PROXY_V2_HEADER     16    /* signature, ver_cmd, fam, len */
/*
 * Our bound on v2's len: the largest address block (UNIX, 216) with room
 * for AUTHORITY, a UNIQUE_ID (<= 128 by the spec), a CRC32C and some SSL
 * TLVs; what haproxy sends with send-proxy-v2 and its usual options fits.
 */
#define PROXY_V2_MAX_LEN    496
#define PROXY_BUF_MAX       (PROXY_V2_HEADER + PROXY_V2_MAX_LEN)
#define PROXY_AUTHORITY_MAX 255
#define PROXY_UNIQUE_ID_MAX 128

/* Which versions a listener accepts: cfg's proxy_protocol values. */
enum proxy_accept { PROXY_ACCEPT_V1 = 1, PROXY_ACCEPT_V2 = 2, PROXY_ACCEPT_ANY = 3 };

enum proxy_status {
	PROXY_NEED_MORE,  /* all fed bytes taken: feed more */
	PROXY_DONE,       /* a whole header: *used says how many of the last feed were its */
	PROXY_ERROR,      /* refused: see proxy_parser.error */
};

enum proxy_error {
	PROXY_ERR_NONE,
	PROXY_ERR_BAD,       /* malformed: not the protocol, or written wrong */
	PROXY_ERR_TOO_LONG,  /* v1 past 107 bytes without CRLF, v2 len past our bound */
	PROXY_ERR_CRC,       /* v2 CRC32C mismatch */
};

enum proxy_command { PROXY_CMD_LOCAL = 0, PROXY_CMD_PROXY = 1 };

struct proxy_result {
	uint8_t version;            /* 1 or 2 */
	uint8_t command;            /* enum proxy_command; v1 is always PROXY */
	bool has_addr;              /* src and dst hold the client's and the balancer's side */
	struct sockaddr_storage src;
	struct sockaddr_storage dst;
	uint16_t authority_len;
	uint8_t unique_id_len;
	char authority[PROXY_AUTHORITY_MAX];  /* raw bytes, not NUL-terminated */
	uint8_t unique_id[PROXY_UNIQUE_ID_MAX];
};

/* A parser's whole state; zero it with proxy_init. About 540 bytes. */
struct proxy_parser {
	uint16_t len;          /* bytes of the header held in buf */
	uint8_t accept;        /* enum proxy_accept */
	uint8_t version;       /* 0 until the first bytes tell */
	uint8_t error;         /* enum proxy_error once PROXY_ERROR was returned */
	uint8_t state;         /* parsing, done or refused */
	uint8_t buf[PROXY_BUF_MAX];
};

/* Starts a parser for one header of the versions ACCEPT allows. */
void proxy_init(struct proxy_parser *p, enum proxy_accept accept);

/*
 * Feeds N bytes. Returns PROXY_NEED_MORE (all N taken), PROXY_DONE (the
 * first *used bytes completed the header; the rest of DATA is the client's,
 * and *r is filled) or PROXY_ERROR (p->error says why). After DONE or
 * ERROR, feeding again returns the same without looking at the bytes.
 */
enum proxy_status proxy_feed(struct proxy_parser *p, const void *data, size_t n, size_t *used,
    struct proxy_result *r);

/* The reason class as a short word for logs and tests: "bad", "too long", "crc". */
const char *proxy_error_name(int error);

/* CRC32C (Castagnoli), as v2's CRC32C TLV carries it; CRC is 0 to start. */
uint32_t proxy_crc32c(uint32_t crc, const void *data, size_t n);

#endif
