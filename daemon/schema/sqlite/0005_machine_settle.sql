-- A machine that announces "settle":true in its status keeps a journal and checks the
-- absolute "expiresAt" of a command (docs/PROTOCOL.md); vendd sends it only to such machines,
-- so the integration guide's machines see the guide's payloads unchanged.
ALTER TABLE machines ADD COLUMN settle INTEGER NOT NULL DEFAULT 0 CHECK (settle IN (0, 1));
