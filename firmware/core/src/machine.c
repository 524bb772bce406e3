/*
 * machine.c - the machine's state machine: commands and settles answered from the journal,
 * one dispense at a time with the drop-sensor debounce, config, status, telemetry and the
 * re-publishing of unacknowledged results. The contract is in machine.h.
 */
#include <string.h>

#include "vend/codec.h"
#include "vend/err.h"
#include "vend/fw/machine.h"
#include "vend/topic.h"

#define CONFIG_BASE "cfg"

static uint64_t now_ms(const struct vend_fw_machine *m)
{
    return m->hal.mono_ms(m->hal.ctx);
}

/* Publishes payload[0..len) on this machine's topic of kind k, if connected. */
static int publish(struct vend_fw_machine *m, enum vend_topic_kind k, int len, int qos, bool retain)
{
    int rc;

    if (len < 0)
        return len;
    if (!m->connected)
        return VEND_EUNAVAILABLE;
    rc = vend_topic_format(m->topic, sizeof(m->topic), m->machine_id, k);
    if (rc < 0)
        return rc;
    rc = m->hal.mqtt_publish(m->hal.ctx, m->topic, m->payload, (size_t)len, qos, retain);
    if (rc < 0)
        m->stats.publish_errors++;
    return rc;
}

static void publish_status(struct vend_fw_machine *m)
{
    struct vend_status st;
    int16_t rssi;

    memset(&st, 0, sizeof(st));
    st.status = VEND_PRESENCE_ONLINE;
    st.door = m->door;
    if (m->hal.rssi != NULL && m->hal.rssi(m->hal.ctx, &rssi) == VEND_OK && rssi >= VEND_RSSI_MIN &&
        rssi <= VEND_RSSI_MAX) {
        st.has_rssi = true;
        st.rssi = rssi;
    }
    st.has_fw = true;
    memcpy(st.fw, m->fw, sizeof(st.fw));
    st.has_settle = true;
    st.settle = true;
    st.has_config_error = m->has_config_error;
    memcpy(st.config_error, m->config_error, sizeof(st.config_error));
    publish(m, VEND_TOPIC_STATUS, vend_encode_status(m->payload, sizeof(m->payload), &st), 1, true);
}

static void put2(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10u % 10u);
    p[1] = (char)('0' + v % 10u);
}

/* RFC 3339 UTC to the second from epoch ms; false past year 9999. */
static bool iso_time(char *out, uint64_t ms)
{
    uint64_t secs = ms / 1000u;
    uint32_t days = (uint32_t)(secs / 86400u), rem = (uint32_t)(secs % 86400u);
    /* Days to civil date (H. Hinnant's algorithm), unsigned since we start at 1970. */
    uint32_t z = days + 719468u, era = z / 146097u, doe = z - era * 146097u;
    uint32_t yoe = (doe - doe / 1460u + doe / 36524u - doe / 146096u) / 365u;
    uint32_t doy = doe - (365u * yoe + yoe / 4u - yoe / 100u), mp = (5u * doy + 2u) / 153u;
    uint32_t day = doy - (153u * mp + 2u) / 5u + 1u, mon = mp < 10u ? mp + 3u : mp - 9u;
    uint32_t year = yoe + era * 400u + (mon <= 2u ? 1u : 0u);

    if (secs / 86400u > UINT32_MAX - 719468u || year > 9999u)
        return false;
    put2(out, year / 100u);
    put2(out + 2, year % 100u);
    out[4] = '-';
    put2(out + 5, mon);
    out[7] = '-';
    put2(out + 8, day);
    out[10] = 'T';
    put2(out + 11, rem / 3600u);
    out[13] = ':';
    put2(out + 14, rem / 60u % 60u);
    out[16] = ':';
    put2(out + 17, rem % 60u);
    out[19] = 'Z';
    out[20] = '\0';
    return true;
}

static void publish_telemetry(struct vend_fw_machine *m)
{
    struct vend_telemetry t;
    uint64_t wall;
    int32_t centi;
    uint16_t s;

    memset(&t, 0, sizeof(t));
    if (m->hal.wall_ms(m->hal.ctx, &wall) == VEND_OK)
        t.has_timestamp = iso_time(t.timestamp, wall);
    for (s = 1; s <= m->nslots; s++) {
        if (m->hal.slot_level(m->hal.ctx, s, &t.slots[t.nslots].level) == VEND_OK)
            t.slots[t.nslots++].id = s;
    }
    /* A reading outside the wire's bounds is a broken sensor: leave it out. */
    if (m->hal.temperature_centi(m->hal.ctx, &centi) == VEND_OK && centi >= VEND_TEMP_CENTI_MIN &&
        centi <= VEND_TEMP_CENTI_MAX) {
        t.has_temperature = true;
        t.temperature = (double)centi / 100.0;
    }
    t.door = m->hal.door(m->hal.ctx);
    publish(m, VEND_TOPIC_TELEMETRY, vend_encode_telemetry(m->payload, sizeof(m->payload), &t), 0,
            false);
    m->telemetry_at_ms = now_ms(m);
}

/* Whether entry i has an answer to give now (see machine.h, "Journal answers"). */
static bool answerable(const struct vend_fw_machine *m, int i)
{
    const struct vend_fw_jentry *e = &m->journal.e[i];

    if (e->rec.state == VEND_FW_J_DONE)
        return true;
    return (e->rec.state == VEND_FW_J_REFUSED || e->rec.state == VEND_FW_J_CANCELLED) && !e->dirty;
}

static void publish_result(struct vend_fw_machine *m, int i)
{
    const struct vend_fw_jrec *rec = &m->journal.e[i].rec;
    struct vend_dispense_result r;
    const char *code = rec->has_error ? vend_result_error_name(rec->error) : NULL;

    memset(&r, 0, sizeof(r));
    memcpy(r.order_id, rec->order_id, sizeof(r.order_id));
    r.slot = rec->slot;
    r.unit = rec->unit;
    r.success = rec->success;
    r.drop_detected = rec->drop_detected;
    r.has_duration = rec->has_duration;
    r.duration_ms = rec->duration_ms;
    if (code != NULL) {
        r.has_error = true;
        memcpy(r.error, code, strlen(code) + 1);
    }
    publish(m, VEND_TOPIC_DISPENSE_RESULT,
            vend_encode_dispense_result(m->payload, sizeof(m->payload), &r), 1, false);
}

/* Publishes entry i's result if it has one, and restarts its re-publish schedule. */
static void answer(struct vend_fw_machine *m, int i)
{
    if (!answerable(m, i))
        return;
    publish_result(m, i);
    m->republish_at_ms[i] = now_ms(m) + VEND_FW_REPUBLISH_FIRST_MS;
    m->republish_gap_ms[i] = VEND_FW_REPUBLISH_FIRST_MS;
}

/* Every result vendd has not acknowledged yet, now. */
static void answer_outstanding(struct vend_fw_machine *m)
{
    int i;

    for (i = 0; i < VEND_FW_JOURNAL_CAP; i++) {
        if (!vend_fw_journal_acked(&m->journal, i))
            answer(m, i);
    }
}

static void republish_due(struct vend_fw_machine *m, uint64_t now)
{
    int i;

    for (i = 0; i < VEND_FW_JOURNAL_CAP; i++) {
        if (vend_fw_journal_acked(&m->journal, i) || !answerable(m, i) ||
            now < m->republish_at_ms[i])
            continue;
        publish_result(m, i);
        if (m->republish_gap_ms[i] < VEND_FW_REPUBLISH_FIRST_MS)
            m->republish_gap_ms[i] = VEND_FW_REPUBLISH_FIRST_MS;
        else if (m->republish_gap_ms[i] <= VEND_FW_REPUBLISH_MAX_MS / 2)
            m->republish_gap_ms[i] *= 2;
        else
            m->republish_gap_ms[i] = VEND_FW_REPUBLISH_MAX_MS;
        m->republish_at_ms[i] = now + m->republish_gap_ms[i];
    }
}

/* Opens the journal; a unit left STARTED by a reboot is reported, never run again. */
static void journal_start(struct vend_fw_machine *m)
{
    int i;

    if (vend_fw_journal_open(&m->journal, &m->hal) < 0)
        return;
    m->journal_ready = true;
    for (i = 0; i < VEND_FW_JOURNAL_CAP; i++) {
        struct vend_fw_jrec rec = m->journal.e[i].rec;

        if (rec.state != VEND_FW_J_STARTED)
            continue;
        rec.state = VEND_FW_J_DONE;
        rec.success = false;
        rec.drop_detected = false;
        rec.has_duration = false;
        rec.has_error = true;
        rec.error = VEND_RESULT_ERROR_POWER_LOSS;
        /* A failed write stays dirty and is retried; the RAM entry answers meanwhile. */
        vend_fw_journal_put(&m->journal, i, &rec);
    }
}

/* Config record payload: three u32, motorTimeout, dropSensorDelay, telemetryInterval. */
static bool config_valid(const uint8_t *p)
{
    uint32_t motor = vend_fw_get_u32(p), delay = vend_fw_get_u32(p + 4),
             interval = vend_fw_get_u32(p + 8);

    return motor >= VEND_MOTOR_TIMEOUT_MS_MIN && motor <= VEND_MOTOR_TIMEOUT_MS_MAX &&
           delay <= VEND_DROP_DELAY_MS_MAX && interval >= VEND_TELEMETRY_INTERVAL_MIN &&
           interval <= VEND_TELEMETRY_INTERVAL_MAX;
}

static int config_load(struct vend_fw_machine *m, struct vend_config *out)
{
    uint8_t p[VEND_FW_STORE_PAYLOAD];
    uint32_t seq = 0;
    int rc;

    rc = vend_fw_store_load(&m->config_store, &m->hal, CONFIG_BASE, VEND_FW_CONFIG_KIND,
                            config_valid, p, &seq);
    m->config_unread = rc == VEND_EIO;
    m->config_seq = m->config_store.seq[0] > m->config_store.seq[1] ? m->config_store.seq[0]
                                                                    : m->config_store.seq[1];
    if (rc < 0)
        return rc;
    out->motor_timeout_ms = vend_fw_get_u32(p);
    out->drop_sensor_delay_ms = vend_fw_get_u32(p + 4);
    out->telemetry_interval_ms = vend_fw_get_u32(p + 8);
    return VEND_OK;
}

static void config_save(struct vend_fw_machine *m)
{
    uint8_t p[VEND_FW_STORE_PAYLOAD];
    struct vend_config old;

    /* Writing blind could overwrite the copy that holds the current value. */
    if (m->config_unread && config_load(m, &old) == VEND_EIO)
        return;
    memset(p, 0, sizeof(p));
    vend_fw_put_u32(p, m->config.motor_timeout_ms);
    vend_fw_put_u32(p + 4, m->config.drop_sensor_delay_ms);
    vend_fw_put_u32(p + 8, m->config.telemetry_interval_ms);
    m->config_dirty = vend_fw_store_save(&m->config_store, &m->hal, CONFIG_BASE,
                                         VEND_FW_CONFIG_KIND, p, ++m->config_seq) < 0;
}

static bool hal_complete(const struct vend_fw_hal *h)
{
    return h != NULL && h->motor_set != NULL && h->motor_state != NULL && h->drop_sensor != NULL &&
           h->slot_level != NULL && h->door != NULL && h->temperature_centi != NULL &&
           h->mono_ms != NULL && h->wall_ms != NULL && h->kv_get != NULL && h->kv_put != NULL &&
           h->kv_erase != NULL && h->mqtt_publish != NULL;
}

/* Copies the NUL-terminated s into out[cap + 1]; false if longer. */
static bool copy_str(char *out, size_t cap, const char *s)
{
    const char *end = memchr(s, '\0', cap + 1);

    if (end == NULL)
        return false;
    memcpy(out, s, (size_t)(end - s) + 1);
    return true;
}

int vend_fw_machine_init(struct vend_fw_machine *m, const struct vend_fw_hal *hal,
                         const struct vend_fw_params *p)
{
    struct vend_status st;
    uint16_t s;

    if (m == NULL || p == NULL || !hal_complete(hal) || !vend_machine_id_valid(p->machine_id) ||
        p->fw == NULL || p->nslots < 1 || p->nslots > VEND_SLOTS_MAX)
        return VEND_EINVAL;
    memset(m, 0, sizeof(*m));
    m->hal = *hal;
    m->nslots = p->nslots;
    copy_str(m->machine_id, VEND_MACHINE_ID_MAX, p->machine_id);
    /* The status encoder is the one judge of a valid fw string. */
    memset(&st, 0, sizeof(st));
    st.has_fw = copy_str(st.fw, VEND_FW_MAX, p->fw);
    if (!st.has_fw || vend_encode_status(m->payload, sizeof(m->payload), &st) < 0)
        return VEND_EINVAL;
    memcpy(m->fw, st.fw, sizeof(m->fw));

    /* Whatever the last run left behind, no motor turns before we decide so. */
    for (s = 1; s <= m->nslots; s++) {
        if (m->hal.motor_set(m->hal.ctx, s, false) < 0) {
            m->stats.motor_errors++;
            m->motor_stuck = s;
        }
    }
    if (config_load(m, &m->config) < 0) {
        m->config.motor_timeout_ms = VEND_FW_DEFAULT_MOTOR_TIMEOUT_MS;
        m->config.drop_sensor_delay_ms = VEND_FW_DEFAULT_DROP_SENSOR_DELAY_MS;
        m->config.telemetry_interval_ms = VEND_FW_DEFAULT_TELEMETRY_INTERVAL_MS;
    }
    journal_start(m);
    m->door = m->hal.door(m->hal.ctx);
    m->retry_at_ms = now_ms(m) + VEND_FW_RETRY_MS;
    return VEND_OK;
}

int vend_fw_machine_will(const struct vend_fw_machine *m, char *topic, size_t topic_size,
                         char *payload, size_t payload_size)
{
    struct vend_status st;
    int rc;

    rc = vend_topic_format(topic, topic_size, m->machine_id, VEND_TOPIC_STATUS);
    if (rc < 0)
        return rc;
    memset(&st, 0, sizeof(st));
    st.status = VEND_PRESENCE_OFFLINE;
    return vend_encode_status(payload, payload_size, &st);
}

void vend_fw_machine_on_connect(struct vend_fw_machine *m)
{
    m->connected = true;
    m->door = m->hal.door(m->hal.ctx);
    publish_status(m);
    answer_outstanding(m);
    publish_telemetry(m);
}

void vend_fw_machine_on_disconnect(struct vend_fw_machine *m)
{
    m->connected = false;
}

/* The refusal for a new unit, in the order of machine.h; false if it may run. */
static bool refusal(struct vend_fw_machine *m, const struct vend_command *c,
                    enum vend_result_error *why)
{
    uint64_t wall;

    if (c->expires_at_ms != 0 && m->hal.wall_ms(m->hal.ctx, &wall) == VEND_OK &&
        wall >= c->expires_at_ms)
        *why = VEND_RESULT_ERROR_EXPIRED;
    else if (c->slot > m->nslots)
        *why = VEND_RESULT_ERROR_INVALID_SLOT;
    else if (m->motor_stuck != 0)
        *why = VEND_RESULT_ERROR_MOTOR_FAULT;
    else if (m->phase != VEND_FW_IDLE)
        *why = VEND_RESULT_ERROR_BUSY;
    else if (m->hal.door(m->hal.ctx) == VEND_DOOR_OPEN)
        *why = VEND_RESULT_ERROR_DOOR_OPEN;
    else
        return false;
    return true;
}

/* The unit of the running entry is over: journal the result and publish it. */
static void finish(struct vend_fw_machine *m, bool dropped)
{
    struct vend_fw_jrec rec = m->journal.e[m->run].rec;

    rec.state = VEND_FW_J_DONE;
    rec.success = dropped;
    rec.drop_detected = dropped;
    rec.has_duration = true;
    rec.duration_ms = m->run_ms;
    rec.has_error = !dropped || m->motor_stuck == rec.slot;
    rec.error = m->motor_stuck == rec.slot ? VEND_RESULT_ERROR_MOTOR_FAULT : m->run_reason;
    m->phase = VEND_FW_IDLE;
    /*
     * Published whether or not the write succeeds: the motor has run and this is what
     * happened. Should a reboot come before the retry, the unit reads STARTED and is
     * reported as POWER_LOSS: a worse answer, never a second run.
     */
    vend_fw_journal_put(&m->journal, m->run, &rec);
    answer(m, m->run);
}

static void motor_off(struct vend_fw_machine *m, uint16_t slot)
{
    if (m->hal.motor_set(m->hal.ctx, slot, false) < 0) {
        m->stats.motor_errors++;
        m->motor_stuck = slot;
    }
}

static void start(struct vend_fw_machine *m, int i, const struct vend_command *c)
{
    m->run = i;
    m->run_start_ms = now_ms(m);
    m->run_limit_ms =
        c->timeout_ms < m->config.motor_timeout_ms ? c->timeout_ms : m->config.motor_timeout_ms;
    m->run_delay_ms = m->config.drop_sensor_delay_ms;
    m->run_ms = 0;
    m->drop_pending = false;
    m->saw_clear = !m->hal.drop_sensor(m->hal.ctx);
    if (m->hal.motor_set(m->hal.ctx, c->slot, true) < 0) {
        m->stats.motor_errors++;
        /* It may be half on: make sure it is off before reporting. */
        motor_off(m, c->slot);
        m->run_reason = VEND_RESULT_ERROR_MOTOR_FAULT;
        finish(m, false);
        return;
    }
    m->phase = VEND_FW_RUNNING;
}

static int dispense(struct vend_fw_machine *m, const struct vend_command *c)
{
    struct vend_fw_jrec rec;
    int i = vend_fw_journal_find(&m->journal, c->order_id, c->unit);

    if (i >= 0) {
        m->stats.answered++;
        answer(m, i);
        return VEND_OK;
    }
    /* A new unit: vendd has closed every one before it (journal.h, "Acknowledgement"). */
    vend_fw_journal_ack(&m->journal);
    i = vend_fw_journal_alloc(&m->journal);
    if (i < 0) {
        m->stats.unjournaled++;
        return i;
    }
    memset(&rec, 0, sizeof(rec));
    memcpy(rec.order_id, c->order_id, sizeof(rec.order_id));
    rec.unit = c->unit;
    rec.slot = c->slot;
    rec.has_error = refusal(m, c, &rec.error);
    rec.state = rec.has_error ? VEND_FW_J_REFUSED : VEND_FW_J_STARTED;
    if (vend_fw_journal_put(&m->journal, i, &rec) == VEND_OK) {
        if (rec.state == VEND_FW_J_STARTED)
            start(m, i, c);
        else
            answer(m, i);
        return VEND_OK;
    }
    if (rec.state == VEND_FW_J_STARTED) {
        /* Not durable, so a reboot could forget the run: the motor must not turn. */
        rec.state = VEND_FW_J_REFUSED;
        rec.has_error = true;
        rec.error = VEND_RESULT_ERROR_JOURNAL_FAULT;
        vend_fw_journal_put(&m->journal, i, &rec);
    }
    /* A refusal is answered once durable (machine.h); a failed write waits for the retry. */
    answer(m, i);
    return VEND_OK;
}

static int settle(struct vend_fw_machine *m, const struct vend_command *c)
{
    struct vend_fw_jrec rec;
    int i = vend_fw_journal_find(&m->journal, c->order_id, c->unit);

    if (i >= 0) {
        /* A running unit answers when it ends. */
        m->stats.answered++;
        answer(m, i);
        return VEND_OK;
    }
    i = vend_fw_journal_alloc(&m->journal);
    if (i < 0) {
        m->stats.unjournaled++;
        return i;
    }
    memset(&rec, 0, sizeof(rec));
    memcpy(rec.order_id, c->order_id, sizeof(rec.order_id));
    rec.unit = c->unit;
    rec.slot = c->slot;
    rec.state = VEND_FW_J_CANCELLED;
    rec.has_error = true;
    rec.error = VEND_RESULT_ERROR_CANCELLED;
    /* "CANCELLED" is a promise never to run it: given only once it is on flash. */
    vend_fw_journal_put(&m->journal, i, &rec);
    answer(m, i);
    return VEND_OK;
}

int vend_fw_machine_on_command(struct vend_fw_machine *m, const char *payload, size_t len,
                               struct vend_diag *diag)
{
    struct vend_command c;
    int rc;

    rc = vend_decode_command(payload, len, &c, diag);
    if (rc < 0) {
        m->stats.commands_bad++;
        return rc;
    }
    if (!m->journal_ready) {
        /* Without the journal a duplicate cannot be told from a new unit. */
        m->stats.unjournaled++;
        return VEND_EUNAVAILABLE;
    }
    return c.cmd == VEND_CMD_SETTLE ? settle(m, &c) : dispense(m, &c);
}

/* The status names the refused key; anything that is not one of ours is "(root)". */
static void config_refused(struct vend_fw_machine *m, const char *field)
{
    static const char *const keys[] = {"motorTimeout", "dropSensorDelay", "telemetryInterval"};
    const char *name = "(root)";
    size_t k;

    m->stats.configs_bad++;
    for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        if (strcmp(field, keys[k]) == 0)
            name = keys[k];
    }
    m->has_config_error = true;
    memcpy(m->config_error, name, strlen(name) + 1);
    publish_status(m);
}

int vend_fw_machine_on_config(struct vend_fw_machine *m, const char *payload, size_t len,
                              struct vend_diag *diag)
{
    struct vend_config c;
    struct vend_diag dg;
    int rc;

    rc = vend_decode_config(payload, len, &c, &dg);
    if (diag != NULL)
        *diag = dg;
    if (rc < 0) {
        config_refused(m, dg.field);
        return rc;
    }
    if (m->has_config_error) {
        m->has_config_error = false;
        m->config_error[0] = '\0';
        publish_status(m);
    }
    /* The retained config comes again on every connect: do not wear the flash for it. */
    if (!m->config_dirty && c.motor_timeout_ms == m->config.motor_timeout_ms &&
        c.drop_sensor_delay_ms == m->config.drop_sensor_delay_ms &&
        c.telemetry_interval_ms == m->config.telemetry_interval_ms)
        return VEND_OK;
    m->config = c;
    m->config_dirty = true;
    config_save(m);
    return VEND_OK;
}

/* Debounce: true once the sensor has read "something" for run_delay_ms without a gap. */
static bool drop_confirmed(struct vend_fw_machine *m, uint64_t now)
{
    if (!m->hal.drop_sensor(m->hal.ctx)) {
        m->saw_clear = true;
        m->drop_pending = false;
        return false;
    }
    if (!m->saw_clear)
        return false; /* blocked since before the run: not a product falling */
    if (!m->drop_pending) {
        m->drop_pending = true;
        m->drop_since_ms = now;
    }
    return now - m->drop_since_ms >= m->run_delay_ms;
}

static void run_step(struct vend_fw_machine *m, uint64_t now)
{
    uint16_t slot = m->journal.e[m->run].rec.slot;
    uint64_t ran = now - m->run_start_ms;
    enum vend_fw_motor ms;

    if (m->phase == VEND_FW_STOPPING) {
        if (drop_confirmed(m, now))
            finish(m, true);
        else if (!m->drop_pending)
            finish(m, false);
        return;
    }
    if (drop_confirmed(m, now)) {
        m->run_ms = (uint32_t)ran;
        motor_off(m, slot);
        finish(m, true);
        return;
    }
    ms = m->hal.motor_state(m->hal.ctx, slot);
    if (m->hal.door(m->hal.ctx) == VEND_DOOR_OPEN)
        m->run_reason = VEND_RESULT_ERROR_DOOR_OPEN;
    else if (ms == VEND_FW_MOTOR_STALLED)
        m->run_reason = VEND_RESULT_ERROR_JAMMED;
    else if (ms == VEND_FW_MOTOR_FAULT)
        m->run_reason = VEND_RESULT_ERROR_MOTOR_FAULT;
    else if (ran >= m->run_limit_ms)
        m->run_reason = VEND_RESULT_ERROR_NO_DROP;
    else
        return;
    /* ran is at most a tick past run_limit_ms, far below VEND_DURATION_MS_MAX. */
    m->run_ms = ran > VEND_DURATION_MS_MAX ? VEND_DURATION_MS_MAX : (uint32_t)ran;
    motor_off(m, slot);
    /* Something is in the beam right now: let the debounce say whether it fell. */
    if (m->drop_pending)
        m->phase = VEND_FW_STOPPING;
    else
        finish(m, false);
}

/* Flash retries: the journal (and the answers waiting on it), the config. */
static void retry(struct vend_fw_machine *m)
{
    bool was_dirty[VEND_FW_JOURNAL_CAP];
    int i;

    if (!m->journal_ready) {
        journal_start(m);
        if (m->journal_ready && m->connected)
            answer_outstanding(m);
    } else if (vend_fw_journal_dirty(&m->journal)) {
        for (i = 0; i < VEND_FW_JOURNAL_CAP; i++)
            was_dirty[i] = m->journal.e[i].dirty;
        vend_fw_journal_flush(&m->journal);
        /* Refusals and cancellations wait for the flash before they are told. */
        for (i = 0; i < VEND_FW_JOURNAL_CAP; i++) {
            if (was_dirty[i] && !m->journal.e[i].dirty &&
                m->journal.e[i].rec.state != VEND_FW_J_DONE)
                answer(m, i);
        }
    }
    if (m->config_dirty)
        config_save(m);
}

void vend_fw_machine_tick(struct vend_fw_machine *m)
{
    uint64_t now = now_ms(m);
    enum vend_door door;

    if (m->phase != VEND_FW_IDLE)
        run_step(m, now);
    if (m->motor_stuck != 0 && m->hal.motor_set(m->hal.ctx, m->motor_stuck, false) == VEND_OK)
        m->motor_stuck = 0;
    if (now >= m->retry_at_ms) {
        retry(m);
        m->retry_at_ms = now + VEND_FW_RETRY_MS;
    }
    if (!m->connected)
        return;
    door = m->hal.door(m->hal.ctx);
    if (door != m->door) {
        m->door = door;
        publish_status(m);
    }
    if (now - m->telemetry_at_ms >= m->config.telemetry_interval_ms)
        publish_telemetry(m);
    republish_due(m, now);
}
