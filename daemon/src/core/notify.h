/*
 * notify.h - the systemd readiness protocol (sd_notify(3)) without libsystemd:
 * one datagram to $NOTIFY_SOCKET. A no-op when not started by systemd.
 */
#ifndef VENDD_NOTIFY_H
#define VENDD_NOTIFY_H

/* Send state ("READY=1", "STOPPING=1"); failures are logged, never fatal. */
void notify_systemd(const char *state);

#endif
