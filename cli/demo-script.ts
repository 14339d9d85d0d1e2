/**
 * The scripted model behind `keel demo`: a small, realistic coding task.
 * It writes a module with a bug and its tests, runs them (they fail), reads the
 * code, fixes it, reruns them (green) and summarises.
 */
import type { ScriptTurn } from '../common/types';

const STATS_PY = `"""Small statistics helpers."""


def mean(values):
    if not values:
        raise ValueError("mean() of an empty list")
    return sum(values) / len(values)


def median(values):
    if not values:
        raise ValueError("median() of an empty list")
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return ordered[middle]
`;

const TEST_PY = `import unittest

from stats import mean, median


class StatsTest(unittest.TestCase):
    def test_mean(self):
        self.assertEqual(mean([1, 2, 3, 4]), 2.5)

    def test_median_odd(self):
        self.assertEqual(median([3, 1, 2]), 2)

    def test_median_even(self):
        self.assertEqual(median([4, 1, 3, 2]), 2.5)

    def test_empty(self):
        with self.assertRaises(ValueError):
            median([])


if __name__ == "__main__":
    unittest.main()
`;

export const DEMO_TASK =
  'Create a Python module stats.py in /workspace/stats with mean() and median(), with unit tests, and make the tests pass.';

export const demoScript: ScriptTurn[] = [
  {
    text: 'I will create the module and its tests.',
    toolCalls: [
      { name: 'write_file', input: { path: 'stats/stats.py', content: STATS_PY } },
      { name: 'write_file', input: { path: 'stats/test_stats.py', content: TEST_PY } },
    ],
  },
  { text: 'Running the tests.', toolCalls: [{ name: 'shell', input: { command: 'cd /workspace/stats && python3 -m unittest -v 2>&1' } }] },
  { text: 'test_median_even fails: median of an even list is wrong. Reading the code.', toolCalls: [{ name: 'read_file', input: { path: 'stats/stats.py', offset: 11 } }] },
  {
    text: 'For an even count, median must average the two middle values.',
    toolCalls: [
      {
        name: 'edit_file',
        input: {
          path: 'stats/stats.py',
          old_string: '        return ordered[middle]\n    return ordered[middle]\n',
          new_string: '        return ordered[middle]\n    return (ordered[middle - 1] + ordered[middle]) / 2\n',
        },
      },
    ],
  },
  // The shell keeps its working directory, so no `cd` is needed this time.
  { text: 'Rerunning the tests.', toolCalls: [{ name: 'shell', input: { command: 'python3 -m unittest -v 2>&1 && git init -q . && git add -A && git -c user.email=agent@keel -c user.name=keel commit -qm "stats: mean and median" && git log --oneline' } }] },
  {
    text: 'Done. stats/stats.py has mean() and median(); median() returned the upper middle value for even-length lists and now averages the two middle values. All 4 tests in stats/test_stats.py pass, and the work is committed in a git repository in /workspace/stats.',
  },
];
