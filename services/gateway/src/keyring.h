/*
 * keyring.h: the keys of AUTH_JWKS_FILE as the gateway's threads share them.
 *
 * main.c makes the keyring at start-up: a file that cannot be read or used stops the gateway with
 * a message naming AUTH_JWKS_FILE. Then it calls gw_keyring_poll once a second, which looks at the
 * file's inode, size, mtime and ctime and reads it again when any changed, so a key rotation needs
 * no restart. A changed file that cannot be used (missing, half written, a key of an unsupported
 * kind) is logged once, with why, and the keys in force are kept until the file changes again.
 * Writing the new file beside the old one and renaming it over it switches in one step.
 *
 * Threads: gw_keyring_new, gw_keyring_poll and gw_keyring_free run on main's thread, and read the
 * file there; gw_keyring_current runs on the loop threads, each with its own reference. A loop
 * thread takes the keyring's mutex only when the set changed since it last looked (an atomic
 * generation counter tells), and holds it only to take a reference to the new set: verifying a
 * token never waits for a file to be read. A set stays alive while any thread still holds it.
 */
#ifndef GW_KEYRING_H
#define GW_KEYRING_H

#include <stddef.h>
#include <stdint.h>

#include "jwks.h"

typedef struct gw_keyring gw_keyring;

/* Reads the JWKS at `path` (copied). The keyring, or NULL with `err` (of `errlen` bytes) set to
 * one line that starts with "AUTH_JWKS_FILE: ", such as "AUTH_JWKS_FILE: /x: No such file or
 * directory" or "AUTH_JWKS_FILE: key 2: unsupported kty \"oct\"". Free with gw_keyring_free. */
gw_keyring *gw_keyring_new(const char *path, char *err, size_t errlen);

/* Drops the keyring's reference to its set (threads may still hold theirs) and frees the rest.
 * NULL is a no-op. After every gw_keyring_current caller is done with the keyring. */
void gw_keyring_free(gw_keyring *kr);

/* Reads the file again if it changed since it was last read, and puts the new set in force; logs
 * what happened (a new set at info, an unusable file at warn, once per change). Main's thread. */
void gw_keyring_poll(gw_keyring *kr);

/*
 * The set in force, for a loop thread that keeps its own reference in *held (NULL at first) and
 * *held_gen: *held itself while it is still in force, else *held is swapped for a reference to the
 * current set (the old one dropped). The result is *held: valid until the thread's next call, or
 * until it drops *held with gw_jwks_unref when it stops.
 */
const gw_jwks *gw_keyring_current(gw_keyring *kr, gw_jwks **held, uint64_t *held_gen);

#endif
