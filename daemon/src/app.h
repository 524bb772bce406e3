/*
 * app.h - the running daemon: everything after the configuration is known.
 *
 * main() (vendd.c) loads and checks the configuration, then hands over here.
 */
#ifndef VENDD_APP_H
#define VENDD_APP_H

#include "conf.h"

/*
 * Runs vendd with a checked configuration until it is told to stop (SIGTERM)
 * or cannot go on. conf stays owned by the caller and outlives the call.
 * Returns the process exit status: 0 after a clean shutdown, non-zero
 * otherwise (the reason has been logged).
 */
int app_run(const struct vendd_conf *conf);

#endif
