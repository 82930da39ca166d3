/*
 * events: what the master's epoll set holds. Every registered object starts
 * with an int kind, so the loop can tell them apart by the pointer alone.
 */
#ifndef EM_EVENTS_H
#define EM_EVENTS_H

enum master_ev_kind {
	MEV_SIGNAL = 1,   /* the signalfd */
	MEV_WORKER,       /* a worker's channel (struct wproc) */
	MEV_CONTROL,      /* the control socket's listener */
	MEV_CTL_CLIENT,   /* a control client (struct ctl_client) */
	MEV_METRICS,      /* the /metrics listener */
	MEV_HTTP_CLIENT,  /* a /metrics client (struct http_client) */
};

#endif
