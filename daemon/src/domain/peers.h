/*
 * peers.h - several vendd instances of one MQTT_SHARED_GROUP on one PostgreSQL: what the
 * others wrote is looked for on a timer, since no commit of theirs wakes this process.
 *
 * Once a second the deadline, refund and payment timers are re-armed from the rows (a unit
 * sent by an instance that died is expired here, its refund sent from here), and four times a
 * second the event stream looks for new rows. Without a group nothing of this runs: one
 * process writes everything and arms its timers as it commits.
 */
#ifndef VENDD_PEERS_H
#define VENDD_PEERS_H

struct vendd;

/* The event stream's look for the other instances' events. */
#define PEERS_EVENTS_MS 250
/* The re-arm of the deadline, refund and payment timers from the rows. */
#define PEERS_REARM_MS 1000

/* Start the timer when MQTT_SHARED_GROUP is set; nothing otherwise. */
void peers_start(struct vendd *v);
/* Drop the timer (shutdown). */
void peers_stop(struct vendd *v);

#endif
