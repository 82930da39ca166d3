/*
 * events: the kinds of event source in the master's epoll set (the
 * struct ev_source at the start of each registered object, common/ev.h).
 */
#ifndef EM_EVENTS_H
#define EM_EVENTS_H

enum master_ev_kind {
	MEV_SIGNAL = 1,   /* the signalfd */
	MEV_WORKER,       /* a worker's channel (struct sup_proc) */
	MEV_CONTROL,      /* the control socket's listener */
	MEV_CTL_CLIENT,   /* a control client (struct reqconn) */
	MEV_METRICS,      /* the /metrics listener */
	MEV_HTTP_CLIENT,  /* a /metrics client (struct reqconn) */
	MEV_AGENT,        /* the HAProxy agent's listener (struct agent) */
	MEV_UPGRADE,      /* a live upgrade's channel between the masters (struct upgrade) */
};

#endif
