/**
 * A running model call's text in the terminal as it is generated (`keel run`, `keel tail`):
 * the deltas are written as they come, on a line of their own starting `  ~ `, and the
 * `model.call` event that ends the call closes that line. When what was shown is not the
 * whole text (joined mid-call, a lost delta), the event's text is printed after it, so what
 * stays on screen is the record. Deltas never reach `--json` output.
 */
import { LiveText, type ModelDelta } from '../common/deltas';
import type { EventRow } from '../common/events';
import { termSafe } from './terminal';

export interface LivePrinter {
  onDelta(d: ModelDelta): void;
  /** Wraps the event printer: a `model.call` closes the live line first. */
  onEvent(e: EventRow): void;
}

/** `write` is the raw output (process.stdout.write); `show` prints events as before. */
export function livePrinter(show: (e: EventRow) => void, write: (s: string) => void = (s) => void process.stdout.write(s)): LivePrinter {
  const live = new LiveText();
  let open = false;
  return {
    onDelta(d) {
      const added = live.add(d);
      if (!added) return;
      if (!open) write('  ~ ');
      open = true;
      write(termSafe(added));
    },
    onEvent(e) {
      if (e.type === 'model.call') {
        const shown = live.ended(e.seq);
        if (open) {
          write('\n');
          open = false;
          // The whole text was on screen: printing the turn again would only repeat it.
          if (shown === (e.data.text ?? '') && !e.data.textRef) {
            show({ ...e, data: { ...e.data, text: undefined } } as EventRow);
            return;
          }
        }
      } else if (open) {
        // Another event while text streams (a message recorded meanwhile): keep it on its own line.
        write('\n');
        open = false;
      }
      show(e);
    },
  };
}
