CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    source TEXT NOT NULL,
    instance TEXT NOT NULL,
    mount TEXT NOT NULL,
    client_id TEXT NOT NULL,
    ip TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    referrer TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    slot INTEGER NOT NULL,
    query TEXT NOT NULL,
    gone_at INTEGER,
    PRIMARY KEY (source, instance, mount, client_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ended (
    source TEXT NOT NULL,
    instance TEXT NOT NULL,
    mount TEXT NOT NULL,
    client_id TEXT NOT NULL,
    ip TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    referrer TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    slot INTEGER NOT NULL,
    query TEXT NOT NULL,
    ended_at INTEGER NOT NULL,
    seen_at INTEGER NOT NULL,
    exact INTEGER NOT NULL,
    PRIMARY KEY (source, instance, mount, client_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS instances (
    source TEXT PRIMARY KEY,
    instance TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mounts (
    source TEXT NOT NULL,
    mount TEXT NOT NULL,
    instance TEXT NOT NULL,
    last_seen INTEGER NOT NULL,
    PRIMARY KEY (source, mount)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letter (
    id INTEGER PRIMARY KEY,
    payload TEXT NOT NULL,
    reason TEXT NOT NULL,
    failed_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS log_positions (
    source TEXT NOT NULL,
    path TEXT NOT NULL,
    inode INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    PRIMARY KEY (source, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS imports (
    file_key TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    path TEXT NOT NULL,
    lines INTEGER NOT NULL,
    imported_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS salts (
    period TEXT PRIMARY KEY,
    salt TEXT NOT NULL
) WITHOUT ROWID;
