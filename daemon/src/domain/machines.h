/*
 * machines.h - the machines vendd serves: registration, presence, the operator's views of a
 * machine and its config (SPEC §2, §3, §5; docs/HTTP-API.md "Machines", "Config").
 *
 * The rules this module keeps:
 *   - A machine exists once registered (POST /api/machines, or MACHINE_ID at first start) and
 *     is never deleted. Slots, orders and MQTT messages need a registered machine, and
 *     machines_exists() is the one place that asks.
 *   - Presence (status, door, rssi, fw, last_seen) comes only from the machine's status
 *     messages; last_seen moves only on ONLINE, because an OFFLINE will is the broker
 *     speaking, not the machine.
 *   - No view shows a secret of a machine, not even mqtt_username.
 *   - machines.config is the config last handed to the broker as the machine's retained
 *     config: it is stored in the transaction that publishes it (machines_push_config).
 *
 * Functions that serve a route take why (>= 160 bytes): on an error it holds the message
 * the operator is answered with, naming the machine.
 */
#ifndef VENDD_MACHINES_H
#define VENDD_MACHINES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct vendd;
struct vend_status;
struct vend_config;

/* Bounds of the operator's fields (schema CHECKs). */
#define MACHINE_NAME_MAX 100
/* The backend's own broker user (deploy/mosquitto/vendd.acl): a machine of that id would be
 * given vendd's topics by the ACL's %u patterns and could take vendd's session. */
#define MACHINE_ID_RESERVED  "vendd"
#define MACHINE_LOCATION_MAX 200

/*
 * Register machine id (a valid machine id) as OFFLINE with name and location (NULL: none).
 * Returns VEND_OK, VEND_ECONFLICT if it exists, or another VEND_E* from the database
 * (logged).
 */
int machines_register(struct vendd *v, const char *id, const char *name, const char *location);

/*
 * SPEC §2: MACHINE_ID is registered at first start, named after itself, if missing; an
 * existing machine is left as it is. Returns VEND_OK or a VEND_E* from the database.
 */
int machines_register_default(struct vendd *v, const char *id);

/* 1 if machine id is registered, 0 if not, or a negative VEND_E* from the database. */
int machines_exists(struct vendd *v, const char *id);

/*
 * Apply a decoded status message of machine id in one transaction (see the rules above):
 * rssi is the latest report, so an absent one becomes NULL (unknown); door and fw keep
 * their last value when absent. *changed tells whether the presence moved. Returns VEND_OK,
 * VEND_ENOTFOUND for an unknown machine, or another VEND_E* from the database.
 */
int machines_apply_status(struct vendd *v, const char *id, const struct vend_status *st,
                          bool *changed);

/*
 * The machine as the API shows it in *out (the caller's reference), its stored config as an
 * object, and with_slots its "slots" (slots_list_json). Returns VEND_OK, VEND_ENOTFOUND or
 * VEND_EDB (*out NULL, why set).
 */
int machines_get_json(struct vendd *v, const char *id, bool with_slots, json_t **out, char *why,
                      size_t why_size);

/*
 * The lists below are read a page at a time (docs/HTTP-API.md "Lists"): at most n rows, in
 * the list's order, from the row after the given key on (the key of the previous page's
 * last row; none: from the start), so a page costs n rows whatever the table holds.
 */

/* Machines as the API shows them, by id, after after_id (NULL: from the first), as an
 * array in *out. Returns VEND_OK or VEND_EDB (*out NULL). */
int machines_page_json(struct vendd *v, const char *after_id, int64_t n, json_t **out);

/*
 * Machine id's dispense_logs rows, as an array in *out: the units sent, newest command first
 * by (command_sent_at, id), then those never sent (command_sent_at NULL: queued, or failed
 * before sending), newest (highest id) first. The page starts after the row (after_sent,
 * after_id): after_id 0 from the start; after_sent NULL, a row never sent. Returns VEND_OK,
 * VEND_ENOTFOUND or VEND_EDB (*out NULL, why set).
 */
int machines_dispense_logs_json(struct vendd *v, const char *id, const char *after_sent,
                                int64_t after_id, int64_t n, json_t **out, char *why,
                                size_t why_size);

/*
 * Machine id's raw telemetry rows (id, device_time, temperature, door, data: the message as
 * the machine sent it, as text, received_at), newest first by (received_at, id), after the row
 * (after_time, after_id) (after_time NULL: from the newest), as an array in *out. Returns
 * VEND_OK, VEND_ENOTFOUND or VEND_EDB (*out NULL, why set).
 */
int machines_telemetry_json(struct vendd *v, const char *id, const char *after_time,
                            int64_t after_id, int64_t n, json_t **out, char *why, size_t why_size);

/*
 * Store cfg as machine id's config and publish it, retained at QoS 1, on its config topic
 * through v->broker. The publish happens inside the transaction that stores it, so a publish
 * that fails leaves the stored config as it was; a retained config is idempotent, so a
 * COMMIT that fails after it is repaired by pushing again (docs/HACKING.md, Database).
 * On VEND_OK, *out is {"machine_id", "topic", "config"}. Errors (*out NULL, why set):
 *   VEND_EINVAL       the codec will not encode cfg: a machine would not accept it
 *   VEND_ENOTFOUND    no such machine
 *   VEND_EUNAVAILABLE the broker is not connected; nothing stored, nothing sent
 *   VEND_EIO          the publish may or may not have reached the broker: the config is
 *                     stored as the broker may hold it (unless the COMMIT failed too,
 *                     which is logged), and pushing it again settles it
 *   another VEND_E*   from the database or the broker; nothing stored
 */
int machines_push_config(struct vendd *v, const char *id, const struct vend_config *cfg,
                         json_t **out, char *why, size_t why_size);

#endif
