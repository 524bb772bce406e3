/*
 * peers.h - several vendd instances of one MQTT_SHARED_GROUP on one PostgreSQL: what the
 * others wrote, which no commit of theirs would otherwise wake this process for.
 *
 * Each instance NOTIFYs channel "vendd:<group>" once per loop turn that committed (payload:
 * its MQTT_CLIENT_ID) and LISTENs there on a connection of its own (pg_listen.h): another's
 * commit wakes the event stream at once and re-arms the deadline, refund, payment and offline
 * timers from the rows within PEERS_NOTIFY_MS (a unit sent by an instance that died is expired
 * here, its refund sent from here). A notification can be missed (the LISTEN connection
 * lost), so the timers are re-armed from the rows once a second anyway, and while the LISTEN
 * connection is down the stream looks four times a second. Without a group nothing of this
 * runs: one process writes everything and arms its timers as it commits.
 */
#ifndef VENDD_PEERS_H
#define VENDD_PEERS_H

struct vendd;

/* The event stream's look for the other instances' events while LISTEN is down. */
#define PEERS_EVENTS_MS 250
/* After another instance's NOTIFY: the re-arm, once for a burst of them. */
#define PEERS_NOTIFY_MS 20
/* The re-arm of the deadline, refund and payment timers from the rows. */
#define PEERS_REARM_MS 1000

/* Start the timer when MQTT_SHARED_GROUP is set; nothing otherwise. */
void peers_start(struct vendd *v);
/* This process committed a change (events_emit() calls it): NOTIFY the others. */
void peers_committed(struct vendd *v);
/* Drop the timers and the LISTEN connection (shutdown). */
void peers_stop(struct vendd *v);

#endif
