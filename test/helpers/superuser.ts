/**
 * Postgres as its superuser, for tests that play an attacker with full database
 * access (editing the append-only log with its trigger switched off). Needs root
 * (or sudo) and the local server setup installs; the tests say so when it is missing.
 */
import { execFileSync } from 'node:child_process';

/** Run SQL as the `postgres` superuser on `database`; returns psql's unaligned output. */
export function asSuperuser(database: string, sqlText: string): string {
  const su = process.getuid?.() === 0 ? ['su', 'postgres', '-c'] : ['sudo', '-n', 'su', 'postgres', '-c'];
  const [cmd, ...args] = su;
  return execFileSync(cmd as string, [...args, `psql -qAtX -v ON_ERROR_STOP=1 -d ${database}`], { input: sqlText, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Run statements against `events` with its append-only triggers off, as an attacker with superuser access would. */
export function tamperEvents(database: string, statements: string): void {
  asSuperuser(
    database,
    `begin;
     alter table events disable trigger events_append_only;
     alter table events disable trigger events_no_truncate;
     ${statements}
     alter table events enable trigger events_append_only;
     alter table events enable trigger events_no_truncate;
     commit;`,
  );
}
