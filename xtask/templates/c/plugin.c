// {{name}}: a Sluice plugin in C (clang + wasi-libc + the WASI adapter).
//
// It authenticates clients against the `users` of its configuration
// (`name:password` pairs, comma-separated) and leaves clients it does not
// know to the next plugin. Replace the hooks with your own, and list the
// hooks you export in world.wit.
//
// Memory rules of the generated bindings: an export owns its arguments and
// must free them; strings in its answer are malloc'd and freed by the
// bindings after the call.

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "{{name_snake}}.h"

typedef {{name_snake}}_string_t string_t;

// `users`, copied by init (one per instance): "name:password,name:password".
static char *users;

static void log_text(sluice_plugin_host_log_level_t level, const char *text) {
    string_t message;
    {{name_snake}}_string_set(&message, text);
    sluice_plugin_host_log(level, &message);
}

static bool equals(const string_t *s, const char *text, size_t len) {
    return s->len == len && memcmp(s->ptr, text, len) == 0;
}

bool exports_sluice_plugin_lifecycle_init(string_t *err) {
    (void)err;
    {{name_snake}}_list_tuple2_string_string_t pairs;
    sluice_plugin_host_config(&pairs);
    for (size_t i = 0; i < pairs.len; i++) {
        if (equals(&pairs.ptr[i].f0, "users", 5)) {
            const string_t *value = &pairs.ptr[i].f1;
            users = malloc(value->len + 1);
            if (users == NULL) {
                abort();
            }
            memcpy(users, value->ptr, value->len);
            users[value->len] = '\0';
        }
    }
    {{name_snake}}_list_tuple2_string_string_free(&pairs);
    log_text(SLUICE_PLUGIN_HOST_LOG_LEVEL_INFO, users ? "users configured" : "no users configured");
    return true;
}

enum check { ACCEPT, WRONG, UNKNOWN };

// Looks `username` up in `users` and compares the password.
static enum check check(const string_t *username, const {{name_snake}}_list_u8_t *password) {
    if (username == NULL || users == NULL) {
        return UNKNOWN;
    }
    const char *entry = users;
    while (*entry != '\0') {
        while (*entry == ' ' || *entry == ',') {
            entry++;
        }
        const char *end = strchr(entry, ',');
        size_t len = end ? (size_t)(end - entry) : strlen(entry);
        const char *colon = memchr(entry, ':', len);
        if (colon != NULL && equals(username, entry, (size_t)(colon - entry))) {
            const char *expected = colon + 1;
            size_t expected_len = len - (size_t)(expected - entry);
            while (expected_len > 0 && expected[expected_len - 1] == ' ') {
                expected_len--;
            }
            bool same = password != NULL && password->len == expected_len &&
                        memcmp(password->ptr, expected, expected_len) == 0;
            return same ? ACCEPT : WRONG;
        }
        entry += len;
    }
    return UNKNOWN;
}

void exports_sluice_plugin_auth_on_register_auth_on_register(
    exports_sluice_plugin_auth_on_register_connection_t *conn,
    exports_sluice_plugin_auth_on_register_subscriber_id_t *subscriber_id,
    string_t *maybe_username, {{name_snake}}_list_u8_t *maybe_password, bool clean_session,
    exports_sluice_plugin_auth_on_register_register_verdict_t *ret) {
    (void)clean_session;
    switch (check(maybe_username, maybe_password)) {
    case ACCEPT:
        ret->tag = SLUICE_PLUGIN_TYPES_REGISTER_VERDICT_OK;
        ret->val.ok.is_some = false;
        break;
    case UNKNOWN:
        ret->tag = SLUICE_PLUGIN_TYPES_REGISTER_VERDICT_NEXT;
        break;
    case WRONG:
        ret->tag = SLUICE_PLUGIN_TYPES_REGISTER_VERDICT_ERROR;
        ret->val.error.tag = SLUICE_PLUGIN_TYPES_DENIAL_INVALID_CREDENTIALS;
        {{name_snake}}_string_dup(&ret->val.error.val.invalid_credentials, "wrong password");
        break;
    }
    exports_sluice_plugin_auth_on_register_connection_free(conn);
    exports_sluice_plugin_auth_on_register_subscriber_id_free(subscriber_id);
    if (maybe_username != NULL) {
        {{name_snake}}_string_free(maybe_username);
    }
    if (maybe_password != NULL) {
        {{name_snake}}_list_u8_free(maybe_password);
    }
}

void exports_sluice_plugin_auth_on_register_m5_auth_on_register_m5(
    exports_sluice_plugin_auth_on_register_m5_connection_t *conn,
    exports_sluice_plugin_auth_on_register_m5_subscriber_id_t *subscriber_id,
    string_t *maybe_username, {{name_snake}}_list_u8_t *maybe_password, bool clean_start,
    exports_sluice_plugin_auth_on_register_m5_connect_properties_t *properties,
    exports_sluice_plugin_auth_on_register_m5_register_verdict_m5_t *ret) {
    (void)clean_start;
    switch (check(maybe_username, maybe_password)) {
    case ACCEPT:
        ret->tag = SLUICE_PLUGIN_TYPES_REGISTER_VERDICT_M5_OK;
        ret->val.ok.is_some = false;
        break;
    case UNKNOWN:
        ret->tag = SLUICE_PLUGIN_TYPES_REGISTER_VERDICT_M5_NEXT;
        break;
    case WRONG:
        ret->tag = SLUICE_PLUGIN_TYPES_REGISTER_VERDICT_M5_ERROR;
        ret->val.error.reason_code = 0x86; // bad user name or password
        ret->val.error.reason_string.is_some = false;
        ret->val.error.server_reference.is_some = false;
        break;
    }
    exports_sluice_plugin_auth_on_register_m5_connection_free(conn);
    exports_sluice_plugin_auth_on_register_m5_subscriber_id_free(subscriber_id);
    if (maybe_username != NULL) {
        {{name_snake}}_string_free(maybe_username);
    }
    if (maybe_password != NULL) {
        {{name_snake}}_list_u8_free(maybe_password);
    }
    exports_sluice_plugin_auth_on_register_m5_connect_properties_free(properties);
}
