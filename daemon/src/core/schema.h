/*
 * schema.h - migrations compiled into the binary from daemon/schema/<backend>/NNNN_name.sql.
 * Versions are strictly increasing; a migration is never edited once released.
 */
#ifndef VENDD_SCHEMA_H
#define VENDD_SCHEMA_H

struct schema_migration {
    int version;
    const char *name;
    const char *sql;
};

extern const struct schema_migration schema_sqlite[];
extern const int schema_sqlite_count;
/* The same versions and names, for PostgreSQL (test_db checks they match). */
extern const struct schema_migration schema_pg[];
extern const int schema_pg_count;

#endif
