/*
 * The /metrics responder's request parsing and answer (metrics_read,
 * metrics_reply), driven over a socketpair as a scraper would.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "master/metrics.h"
#include "reqconn_pair.h"

/* metrics_read's verdict on a request sent in one piece. */
static enum http_req
read_whole(const char *req)
{
	int peer;
	struct reqconn *c = conn_open(&peer);
	enum http_req r;

	client_send(peer, req);
	r = metrics_read(c);
	conn_free(c, peer);
	return r;
}

static void
get_metrics_is_served(void **state)
{
	(void)state;
	assert_int_equal(read_whole("GET /metrics HTTP/1.0\r\n\r\n"), HTTP_METRICS);
	assert_int_equal(read_whole("GET /metrics HTTP/1.1\r\nHost: localhost:9100\r\n"
	    "User-Agent: Prometheus/2.45\r\nAccept: text/plain\r\n\r\n"), HTTP_METRICS);
}

static void
a_query_string_is_ignored(void **state)
{
	(void)state;
	assert_int_equal(read_whole("GET /metrics?x HTTP/1.0\r\n\r\n"), HTTP_METRICS);
	assert_int_equal(read_whole("GET /metrics?name[]=up HTTP/1.0\r\n\r\n"), HTTP_METRICS);
}

static void
other_paths_are_not_found(void **state)
{
	(void)state;
	assert_int_equal(read_whole("GET /other HTTP/1.0\r\n\r\n"), HTTP_NOT_FOUND);
	assert_int_equal(read_whole("GET / HTTP/1.0\r\n\r\n"), HTTP_NOT_FOUND);
	assert_int_equal(read_whole("GET /metricsx HTTP/1.0\r\n\r\n"), HTTP_NOT_FOUND);
	assert_int_equal(read_whole("GET /metrics/ HTTP/1.0\r\n\r\n"), HTTP_NOT_FOUND);
}

static void
other_methods_are_bad_requests(void **state)
{
	(void)state;
	assert_int_equal(read_whole("POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n"),
	    HTTP_BAD);
	assert_int_equal(read_whole("HEAD /metrics HTTP/1.0\r\n\r\n"), HTTP_BAD);
	assert_int_equal(read_whole("get /metrics HTTP/1.0\r\n\r\n"), HTTP_BAD);
}

/* The head may end in CRLF CRLF or, from a lax client, in two bare newlines. */
static void
either_end_of_head_will_do(void **state)
{
	(void)state;
	assert_int_equal(read_whole("GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n"), HTTP_METRICS);
	assert_int_equal(read_whole("GET /metrics HTTP/1.0\nHost: x\n\n"), HTTP_METRICS);
	assert_int_equal(read_whole("GET /other HTTP/1.0\n\n"), HTTP_NOT_FOUND);
	assert_int_equal(read_whole("POST /metrics HTTP/1.0\n\n"), HTTP_BAD);
}

static void
a_head_split_across_reads(void **state)
{
	const char *parts[] = { "GET /metr", "ics HTTP/1.0\r\n", "Host: x\r\n", "\r" };
	int peer;
	struct reqconn *c = conn_open(&peer);

	(void)state;
	assert_int_equal(metrics_read(c), HTTP_MORE);  /* nothing yet */
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		client_send(peer, parts[i]);
		assert_int_equal(metrics_read(c), HTTP_MORE);
	}
	client_send(peer, "\n");
	assert_int_equal(metrics_read(c), HTTP_METRICS);
	conn_free(c, peer);
}

/* Not even the method is judged before the head is complete. */
static void
an_incomplete_head_is_not_judged(void **state)
{
	int peer;
	struct reqconn *c = conn_open(&peer);

	(void)state;
	client_send(peer, "POST /metrics HTTP/1.0\r\n");
	assert_int_equal(metrics_read(c), HTTP_MORE);
	client_send(peer, "\r\n");
	assert_int_equal(metrics_read(c), HTTP_BAD);
	conn_free(c, peer);
}

static void
eof_before_the_end_of_head_is_bad(void **state)
{
	int peer;
	struct reqconn *c = conn_open(&peer);

	(void)state;
	client_send(peer, "GET /metrics HTTP/1.0\r\n");
	assert_int_equal(metrics_read(c), HTTP_MORE);
	shutdown(peer, SHUT_WR);
	assert_int_equal(metrics_read(c), HTTP_BAD);
	conn_free(c, peer);
}

static void
a_head_larger_than_the_buffer_is_bad(void **state)
{
	int peer;
	struct reqconn *c = conn_open(&peer);
	char head[3000];
	enum http_req r = HTTP_MORE;
	int reads = 0;

	(void)state;
	memset(head, 'h', sizeof(head));
	memcpy(head, "GET /metrics HTTP/1.0\r\nX: ", 26);
	assert_int_equal(write(peer, head, sizeof(head)), (ssize_t)sizeof(head));
	while (r == HTTP_MORE && reads++ < 10)
		r = metrics_read(c);
	assert_int_equal(r, HTTP_BAD);
	assert_int_equal(c->len, sizeof(c->buf) - 1);
	conn_free(c, peer);
}

/* Splits an answer at its blank line; checks the status line and Content-Length. */
static const char *
answer_expect(const char *got, const char *status_line)
{
	const char *end = strstr(got, "\r\n\r\n"), *cl;
	size_t len = 0;

	assert_non_null(end);
	if (strncmp(got, status_line, strlen(status_line)) != 0 ||
	    strncmp(got + strlen(status_line), "\r\n", 2) != 0)
		fail_msg("status line %.*s, want %s", (int)strcspn(got, "\r"), got, status_line);
	assert_non_null(cl = strstr(got, "\r\nContent-Length: "));
	assert_true(cl < end);
	assert_int_equal(sscanf(cl, "\r\nContent-Length: %zu\r\n", &len), 1);
	assert_int_equal(len, strlen(end + 4));
	assert_non_null(strstr(got, "\r\nContent-Type: text/plain; version=0.0.4"));
	assert_non_null(strstr(got, "\r\nConnection: close\r\n"));
	return end + 4;
}

static char *
reply_of(enum http_req req, const char *body)
{
	int peer;
	struct reqconn *c = conn_open(&peer);
	char *got;

	metrics_reply(c, req, body);  /* frees c */
	got = client_receive(peer);
	close(peer);
	return got;
}

static void
reply_200_with_the_body(void **state)
{
	const char *body = "# HELP echomaster_workers Worker slots.\n"
	    "# TYPE echomaster_workers gauge\nechomaster_workers 2\n";
	char *got = reply_of(HTTP_METRICS, body);

	(void)state;
	assert_string_equal(answer_expect(got, "HTTP/1.0 200 OK"), body);
	free(got);
	got = reply_of(HTTP_METRICS, NULL);
	assert_string_equal(answer_expect(got, "HTTP/1.0 200 OK"), "");
	free(got);
}

static void
reply_404_and_400_say_what_is_served(void **state)
{
	char *got = reply_of(HTTP_NOT_FOUND, NULL);

	(void)state;
	assert_string_equal(answer_expect(got, "HTTP/1.0 404 Not Found"),
	    "only GET /metrics is served here\n");
	free(got);
	got = reply_of(HTTP_BAD, NULL);
	assert_string_equal(answer_expect(got, "HTTP/1.0 400 Bad Request"),
	    "only GET /metrics is served here\n");
	free(got);
}

/* A page of many kilobytes: Content-Length still counts every byte. */
static void
reply_with_a_long_body(void **state)
{
	size_t len = 30000;
	char *body = malloc(len + 1), *got;

	(void)state;
	assert_non_null(body);
	for (size_t i = 0; i < len; i++)
		body[i] = i % 64 == 63 ? '\n' : (char)('a' + i % 26);
	body[len] = '\0';
	got = reply_of(HTTP_METRICS, body);
	assert_string_equal(answer_expect(got, "HTTP/1.0 200 OK"), body);
	free(got);
	free(body);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(get_metrics_is_served),
		cmocka_unit_test(a_query_string_is_ignored),
		cmocka_unit_test(other_paths_are_not_found),
		cmocka_unit_test(other_methods_are_bad_requests),
		cmocka_unit_test(either_end_of_head_will_do),
		cmocka_unit_test(a_head_split_across_reads),
		cmocka_unit_test(an_incomplete_head_is_not_judged),
		cmocka_unit_test(eof_before_the_end_of_head_is_bad),
		cmocka_unit_test(a_head_larger_than_the_buffer_is_bad),
		cmocka_unit_test(reply_200_with_the_body),
		cmocka_unit_test(reply_404_and_400_say_what_is_served),
		cmocka_unit_test(reply_with_a_long_body),
	};
	return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
