/*
 * migrate.h: applies the SQL migrations in migrations/ to every PostgreSQL shard.
 *
 * The migrations are numbered files, migrations/NNNN_name.sql, embedded in the binary at build
 * time (cmake/embed_migrations.cmake), so `cart-store migrate` needs no files at run time. Each
 * shard records what it applied in
 *
 *   schema_migrations (version integer PRIMARY KEY, name text, checksum text, applied_at timestamptz)
 *
 * and a migration is applied in one transaction together with its row, so a shard never holds
 * half a migration. Concurrent migrates (several pods starting at once) serialize on a
 * PostgreSQL advisory lock and each migration is applied once.
 */
#ifndef CS_MIGRATE_H
#define CS_MIGRATE_H

#include <stddef.h>

#include "cartshard/config.h"

/* One embedded migration file. All pointers are to static data of the binary. */
typedef struct cs_migration {
    /** NNNN of the file name: >= 1, unique, and the order of application. */
    int version;
    /** The file name, e.g. "0001_init.sql": named in logs and recorded in schema_migrations. */
    const char *name;
    /** The file's bytes, NUL-terminated. */
    const char *sql;
    /** Length of `sql` in bytes, without the NUL. */
    size_t sql_len;
    /** "sha256:<64 hex digits>" of the file's bytes: recorded, and compared on every run. */
    const char *checksum;
} cs_migration;

/* The embedded migrations, sorted by ascending version (generated file). */
extern const cs_migration cs_migrations[];
extern const size_t cs_migrations_count;

/*
 * Brings every shard of cfg->shard_dsns[0 .. cfg->nshards) up to date with cs_migrations, one
 * shard after the other, each over its own blocking libpq connection:
 *
 *  - connects, retrying for up to 30 s while the server is starting;
 *  - holds a session advisory lock while it works, so concurrent migrates serialize;
 *  - then sets the session's lock_timeout and statement_timeout (cfg->migrate_lock_timeout_ms,
 *    cfg->migrate_statement_timeout_ms): a migration that waits too long for a table's lock
 *    fails rather than stall the traffic queued behind it, and changes nothing;
 *  - creates schema_migrations if missing, then applies each migration not recorded yet, each in
 *    one transaction with its schema_migrations row.
 *
 * Returns 0 when every shard is up to date. Returns -1 at the first shard that fails, after
 * logging (cart_log) the shard's index and address (never its password) and why: unreachable,
 * a failing statement and the file it is in, or a recorded migration whose checksum differs from
 * the embedded file (an applied migration was edited: nothing more is applied to that shard).
 * Shards before it stay migrated; running it again continues where it stopped. Borrows `cfg`.
 */
int cs_migrate_shards(const cart_config *cfg);

#endif
