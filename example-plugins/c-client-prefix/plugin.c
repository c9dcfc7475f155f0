// c-client-prefix: a client-id prefix policy, written in C.
//
// A client whose id starts with one of the configured prefixes is accepted
// (optionally moved into a mountpoint); any other client is refused, or left
// to the next plugin with `unmatched = "next"`. See README.md.
//
// Memory, as wit-bindgen's C bindings define it:
// - An export owns its arguments: every hook frees them before returning
//   (the `*_free` helpers of client_prefix.h).
// - An export's answer is freed by the bindings after the broker has read it
//   (the post-return function), with free(): every string in an answer must
//   come from malloc (client_prefix_string_dup*), never a literal.
// - Strings passed to an import (host.log) stay the caller's.
// - What an import returns (host.config) belongs to the caller.

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_prefix.h"

typedef client_prefix_string_t string_t;

// MQTT 5 CONNACK reason code 0x85: "client identifier not valid".
#define CLIENT_IDENTIFIER_NOT_VALID 0x85

// The configuration, parsed once per instance by init.
static struct {
    bool loaded;
    // The allowed prefixes (NUL-terminated copies) and their lengths.
    char **prefixes;
    size_t *prefix_lens;
    size_t prefix_count;
    // true: an unmatched client goes to the next plugin; false: refused.
    bool unmatched_next;
    // The mountpoint accepted clients are moved into, or NULL to leave it.
    char *mountpoint;
} config;

static void log_text(sluice_plugin_host_log_level_t level, const char *text) {
    string_t message;
    client_prefix_string_set(&message, text);
    sluice_plugin_host_log(level, &message);
}

static bool key_is(const string_t *key, const char *name) {
    size_t n = strlen(name);
    return key->len == n && memcmp(key->ptr, name, n) == 0;
}

// A NUL-terminated copy of `len` bytes at `bytes`.
static char *copy_text(const uint8_t *bytes, size_t len) {
    char *text = malloc(len + 1);
    if (text == NULL) {
        abort();
    }
    memcpy(text, bytes, len);
    text[len] = '\0';
    return text;
}

static bool is_space(uint8_t c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// An init error: a malloc'd copy of the message.
static bool fail(string_t *err, const char *message) {
    client_prefix_string_dup(err, message);
    return false;
}

// Splits "a-, b-,c-" into prefixes, trimming spaces. An empty entry is an
// error: it would let every client in.
static bool parse_prefixes(const string_t *value, string_t *err) {
    size_t capacity = 1;
    for (size_t i = 0; i < value->len; i++) {
        capacity += value->ptr[i] == ',';
    }
    config.prefixes = calloc(capacity, sizeof(char *));
    config.prefix_lens = calloc(capacity, sizeof(size_t));
    if (config.prefixes == NULL || config.prefix_lens == NULL) {
        abort();
    }
    size_t start = 0;
    while (start <= value->len) {
        size_t end = start;
        while (end < value->len && value->ptr[end] != ',') {
            end++;
        }
        size_t from = start, to = end;
        while (from < to && is_space(value->ptr[from])) {
            from++;
        }
        while (to > from && is_space(value->ptr[to - 1])) {
            to--;
        }
        if (from == to) {
            return fail(err, "`prefixes` has an empty entry, which would allow every client id");
        }
        config.prefixes[config.prefix_count] = copy_text(value->ptr + from, to - from);
        config.prefix_lens[config.prefix_count] = to - from;
        config.prefix_count++;
        start = end + 1;
    }
    return true;
}

// Reads and checks the configuration. Any unknown key or invalid value is an
// error, so that a misspelt setting never goes unnoticed.
static bool load_config(string_t *err) {
    client_prefix_list_tuple2_string_string_t pairs;
    sluice_plugin_host_config(&pairs);
    bool ok = true;
    bool have_prefixes = false;
    for (size_t i = 0; ok && i < pairs.len; i++) {
        const string_t *key = &pairs.ptr[i].f0;
        const string_t *value = &pairs.ptr[i].f1;
        if (key_is(key, "prefixes")) {
            ok = parse_prefixes(value, err);
            have_prefixes = true;
        } else if (key_is(key, "unmatched")) {
            if (key_is(value, "next")) {
                config.unmatched_next = true;
            } else if (key_is(value, "deny")) {
                config.unmatched_next = false;
            } else {
                ok = fail(err, "`unmatched` must be \"deny\" or \"next\"");
            }
        } else if (key_is(key, "mountpoint")) {
            config.mountpoint = copy_text(value->ptr, value->len);
        } else {
            char *name = copy_text(key->ptr, key->len);
            const char *format = "unknown setting `%s` (known: prefixes, unmatched, mountpoint)";
            size_t size = strlen(format) + key->len + 1;
            char *message = malloc(size);
            if (message == NULL) {
                abort();
            }
            snprintf(message, size, format, name);
            free(name);
            ok = fail(err, message);
            free(message);
        }
    }
    if (ok && !have_prefixes) {
        ok = fail(err, "`prefixes` is missing: a comma-separated list of allowed client id prefixes");
    }
    client_prefix_list_tuple2_string_string_free(&pairs);
    config.loaded = ok;
    return ok;
}

bool exports_sluice_plugin_lifecycle_init(string_t *err) {
    if (!load_config(err)) {
        return false;
    }
    char summary[512];
    int n = snprintf(summary, sizeof summary, "c-client-prefix ready: %zu prefix(es) [",
                     config.prefix_count);
    for (size_t i = 0; i < config.prefix_count && n > 0 && (size_t)n < sizeof summary; i++) {
        n += snprintf(summary + n, sizeof summary - n, "%s%s", i ? ", " : "", config.prefixes[i]);
    }
    if (n > 0 && (size_t)n < sizeof summary) {
        snprintf(summary + n, sizeof summary - n, "], unmatched: %s, mountpoint: %s",
                 config.unmatched_next ? "next" : "deny",
                 config.mountpoint ? config.mountpoint : "(unchanged)");
    }
    log_text(SLUICE_PLUGIN_HOST_LOG_LEVEL_INFO, summary);
    return true;
}

static bool has_allowed_prefix(const string_t *client_id) {
    for (size_t i = 0; i < config.prefix_count; i++) {
        size_t n = config.prefix_lens[i];
        if (client_id->len >= n && memcmp(client_id->ptr, config.prefixes[i], n) == 0) {
            return true;
        }
    }
    return false;
}

// What both hooks decide.
enum decision { ACCEPT, PASS, REFUSE };

static enum decision decide(const string_t *client_id) {
    if (!config.loaded) {
        // init failed or was not called: refuse rather than guess.
        return REFUSE;
    }
    if (has_allowed_prefix(client_id)) {
        return ACCEPT;
    }
    return config.unmatched_next ? PASS : REFUSE;
}

// The modifiers of an accepted client: a new subscriber id (same client id,
// configured mountpoint) if a mountpoint is configured, else none. All
// strings are fresh copies: the answer is freed after the call.
static sluice_plugin_types_option_register_modifiers_t accepted(
    const sluice_plugin_types_subscriber_id_t *id) {
    sluice_plugin_types_option_register_modifiers_t result;
    memset(&result, 0, sizeof result);
    if (config.mountpoint != NULL) {
        result.is_some = true;
        result.val.subscriber_id.is_some = true;
        client_prefix_string_dup(&result.val.subscriber_id.val.mountpoint, config.mountpoint);
        client_prefix_string_dup_n(&result.val.subscriber_id.val.client_id,
                                   (const char *)id->client_id.ptr, id->client_id.len);
    }
    return result;
}

// The logged (MQTT 3.x) or sent (MQTT 5 reason string) refusal text.
static string_t refusal(const string_t *client_id) {
    const char *head = config.loaded ? "client id `" : "plugin not configured; client id `";
    const char *tail = "` has no allowed prefix";
    size_t head_len = strlen(head), tail_len = strlen(tail);
    string_t text;
    text.len = head_len + client_id->len + tail_len;
    text.ptr = malloc(text.len);
    if (text.ptr == NULL) {
        abort();
    }
    memcpy(text.ptr, head, head_len);
    memcpy(text.ptr + head_len, client_id->ptr, client_id->len);
    memcpy(text.ptr + head_len + client_id->len, tail, tail_len);
    return text;
}

void exports_sluice_plugin_auth_on_register_auth_on_register(
    exports_sluice_plugin_auth_on_register_connection_t *conn,
    exports_sluice_plugin_auth_on_register_subscriber_id_t *subscriber_id,
    string_t *maybe_username, client_prefix_list_u8_t *maybe_password, bool clean_session,
    exports_sluice_plugin_auth_on_register_register_verdict_t *ret) {
    (void)clean_session;
    switch (decide(&subscriber_id->client_id)) {
    case ACCEPT:
        ret->tag = SLUICE_PLUGIN_TYPES_REGISTER_VERDICT_OK;
        ret->val.ok = accepted(subscriber_id);
        break;
    case PASS:
        ret->tag = SLUICE_PLUGIN_TYPES_REGISTER_VERDICT_NEXT;
        break;
    case REFUSE:
        ret->tag = SLUICE_PLUGIN_TYPES_REGISTER_VERDICT_ERROR;
        ret->val.error.tag = SLUICE_PLUGIN_TYPES_DENIAL_NOT_AUTHORIZED;
        ret->val.error.val.not_authorized = refusal(&subscriber_id->client_id);
        break;
    }
    // The arguments are ours: free them.
    exports_sluice_plugin_auth_on_register_connection_free(conn);
    exports_sluice_plugin_auth_on_register_subscriber_id_free(subscriber_id);
    if (maybe_username != NULL) {
        client_prefix_string_free(maybe_username);
    }
    if (maybe_password != NULL) {
        client_prefix_list_u8_free(maybe_password);
    }
}

void exports_sluice_plugin_auth_on_register_m5_auth_on_register_m5(
    exports_sluice_plugin_auth_on_register_m5_connection_t *conn,
    exports_sluice_plugin_auth_on_register_m5_subscriber_id_t *subscriber_id,
    string_t *maybe_username, client_prefix_list_u8_t *maybe_password, bool clean_start,
    exports_sluice_plugin_auth_on_register_m5_connect_properties_t *properties,
    exports_sluice_plugin_auth_on_register_m5_register_verdict_m5_t *ret) {
    (void)clean_start;
    switch (decide(&subscriber_id->client_id)) {
    case ACCEPT:
        ret->tag = SLUICE_PLUGIN_TYPES_REGISTER_VERDICT_M5_OK;
        ret->val.ok = accepted(subscriber_id);
        break;
    case PASS:
        ret->tag = SLUICE_PLUGIN_TYPES_REGISTER_VERDICT_M5_NEXT;
        break;
    case REFUSE:
        ret->tag = SLUICE_PLUGIN_TYPES_REGISTER_VERDICT_M5_ERROR;
        ret->val.error.reason_code = CLIENT_IDENTIFIER_NOT_VALID;
        ret->val.error.reason_string.is_some = true;
        ret->val.error.reason_string.val = refusal(&subscriber_id->client_id);
        ret->val.error.server_reference.is_some = false;
        break;
    }
    // The arguments are ours: free them.
    exports_sluice_plugin_auth_on_register_m5_connection_free(conn);
    exports_sluice_plugin_auth_on_register_m5_subscriber_id_free(subscriber_id);
    if (maybe_username != NULL) {
        client_prefix_string_free(maybe_username);
    }
    if (maybe_password != NULL) {
        client_prefix_list_u8_free(maybe_password);
    }
    exports_sluice_plugin_auth_on_register_m5_connect_properties_free(properties);
}
