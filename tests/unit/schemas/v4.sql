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
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    at INTEGER NOT NULL DEFAULT 0,
    previous_at INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    instance TEXT NOT NULL DEFAULT '',
    mount TEXT NOT NULL DEFAULT '',
    client_id TEXT NOT NULL DEFAULT '',
    ip TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT '',
    referrer TEXT NOT NULL DEFAULT '',
    query TEXT NOT NULL DEFAULT '',
    started_at INTEGER NOT NULL DEFAULT 0,
    slot INTEGER NOT NULL DEFAULT 0,
    visitor_id TEXT NOT NULL DEFAULT '',
    payload TEXT
);
CREATE TABLE IF NOT EXISTS cursors (
    output TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS parked (
    seq INTEGER PRIMARY KEY,
    site INTEGER NOT NULL,
    held INTEGER NOT NULL,
    parked_at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    at INTEGER NOT NULL DEFAULT 0,
    previous_at INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    instance TEXT NOT NULL DEFAULT '',
    mount TEXT NOT NULL DEFAULT '',
    client_id TEXT NOT NULL DEFAULT '',
    ip TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT '',
    referrer TEXT NOT NULL DEFAULT '',
    query TEXT NOT NULL DEFAULT '',
    started_at INTEGER NOT NULL DEFAULT 0,
    slot INTEGER NOT NULL DEFAULT 0,
    visitor_id TEXT NOT NULL DEFAULT '',
    payload TEXT
);
CREATE INDEX IF NOT EXISTS parked_by_site ON parked(site, seq);
CREATE TABLE IF NOT EXISTS dead_letter (
    seq INTEGER PRIMARY KEY,
    failure TEXT NOT NULL,
    failed_at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    at INTEGER NOT NULL DEFAULT 0,
    previous_at INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    instance TEXT NOT NULL DEFAULT '',
    mount TEXT NOT NULL DEFAULT '',
    client_id TEXT NOT NULL DEFAULT '',
    ip TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT '',
    referrer TEXT NOT NULL DEFAULT '',
    query TEXT NOT NULL DEFAULT '',
    started_at INTEGER NOT NULL DEFAULT 0,
    slot INTEGER NOT NULL DEFAULT 0,
    visitor_id TEXT NOT NULL DEFAULT '',
    payload TEXT
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    mount TEXT NOT NULL,
    site_id INTEGER,
    visitor_id TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER NOT NULL,
    seconds INTEGER NOT NULL,
    reason TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    referrer TEXT NOT NULL,
    campaign TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_by_end ON history(ended_at);
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
