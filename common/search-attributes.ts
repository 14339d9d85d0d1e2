/**
 * The Temporal search attributes and memo a session carries, so operators can filter sessions in the
 * Temporal UI and with `temporal workflow list -q "KeelTenant='acme' AND KeelStatus='waiting'"`.
 *
 * A namespace must have the attributes registered before a workflow may carry them: `keel dev` (and every
 * dev server Keel starts) registers them; on a cluster, `temporal operator search-attribute create --name
 * KeelTenant --type Keyword` (and KeelStatus, KeelModel) does. The client
 * sets them only where they are registered, and the workflow keeps `KeelStatus` current only when its
 * start carried it, so sessions run the same on a namespace without them.
 */
import { defineSearchAttributeKey, SearchAttributeType, type SearchAttributePair } from '@temporalio/common';
import type { SessionSpec } from './types';

export const TENANT_ATTRIBUTE = defineSearchAttributeKey('KeelTenant', SearchAttributeType.KEYWORD);
export const STATUS_ATTRIBUTE = defineSearchAttributeKey('KeelStatus', SearchAttributeType.KEYWORD);
export const MODEL_ATTRIBUTE = defineSearchAttributeKey('KeelModel', SearchAttributeType.KEYWORD);

/** Every attribute, for registering them (`temporal operator search-attribute create --name … --type Keyword`). */
export const SEARCH_ATTRIBUTES = [TENANT_ATTRIBUTE, STATUS_ATTRIBUTE, MODEL_ATTRIBUTE] as const;

/** A memo's task is cut here: a memo is for reading in a list, the whole task is in the session's input. */
export const MEMO_TASK_CHARS = 500;

/** What a session starts with: its tenant, `running`, and `provider:model`. */
export function startAttributes(spec: SessionSpec, tenant: string): SearchAttributePair[] {
  return [
    { key: TENANT_ATTRIBUTE, value: tenant },
    { key: STATUS_ATTRIBUTE, value: 'running' },
    { key: MODEL_ATTRIBUTE, value: `${spec.model.provider}:${spec.model.model}` },
  ];
}

/** The memo: the tenant (readable before the first event) and the start of the task. */
export function startMemo(spec: SessionSpec, tenant: string): { tenant: string; task: string } {
  const task = spec.task.length > MEMO_TASK_CHARS ? `${spec.task.slice(0, MEMO_TASK_CHARS - 1)}…` : spec.task;
  return { tenant, task };
}
