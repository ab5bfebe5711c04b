import { readFileSync, writeFileSync } from 'node:fs';
import { Document, isSeq } from 'yaml';
import { defaultShown, envNames, isEmpty, OPTION_LIST, type OptionSpec } from './options.js';
import { type Doc, setAt } from './paths.js';

/**
 * The option reference and its YAML file of defaults in docs/configuration.md, made from the table:
 * `npm run docs:options` writes them between their markers, and test/unit/config-readme.test.ts
 * fails when the page differs.
 */
export const REFERENCE_PAGE = 'docs/configuration.md';
const cell = (s: string) => s.replace(/\|/g, '\\|');
const code = (s: string) => `\`${cell(s)}\``;

function shownDefault(spec: OptionSpec<unknown>): string {
  const shown = defaultShown(spec);
  if (shown === undefined) return '–';
  const plain = spec.defaultText !== undefined || spec.kind.isSwitch || isEmpty(spec.default);
  return plain ? cell(shown) : code(shown);
}

export function optionsTable(): string {
  const rows = OPTION_LIST.map(([, spec]) =>
    [
      code(spec.flag),
      envNames(spec).map(code).join(', '),
      spec.cliOnly ? '–' : code(spec.path),
      shownDefault(spec),
      cell(spec.help),
    ].join(' | '),
  );
  return ['| flag | environment | file key | default | meaning |', '|---|---|---|---|---|']
    .concat(rows.map((r) => `| ${r} |`))
    .join('\n');
}

/** One key and its value as YAML lines: lists of plain values in flow style, maps as blocks. */
function keyLines(key: string, value: unknown): string[] {
  const doc = new Document({ [key]: value });
  const node = doc.get(key, true);
  if (isSeq(node) && node.items.every((i) => typeof (i as { value?: unknown }).value !== 'object')) {
    node.flow = true;
  }
  return doc.toString({ lineWidth: 0 }).trimEnd().split('\n');
}

/** Shown commented out with its example: no default, or an empty list or map. */
const optionalKey = (spec: OptionSpec<unknown>) => spec.default === undefined || isEmpty(spec.default);

/** Whether a section is absent by default: it has a required key, or only optional keys. */
function optionalSection(section: Doc): boolean {
  const specs = leaves(section);
  return specs.some((s) => s.required) || specs.every(optionalKey);
}
function leaves(node: Doc): OptionSpec<unknown>[] {
  return Object.values(node).flatMap((v) => (isSpec(v) ? [v] : leaves(v as Doc)));
}
const isSpec = (v: unknown): v is OptionSpec<unknown> => typeof v === 'object' && v !== null && 'kind' in v;

/**
 * Lines of a section: a key with a default as it is, an optional key (or a whole optional section)
 * commented out with an example, so the block as it stands is exactly the defaults.
 */
function sectionLines(node: Doc, depth: number, commentedAt?: number): string[] {
  const line = (text: string, at: number | undefined) =>
    at === undefined ? '  '.repeat(depth) + text : `${'  '.repeat(at)}# ${'  '.repeat(depth - at)}${text}`;
  return Object.entries(node).flatMap(([key, child]) => {
    if (isSpec(child)) {
      const at = commentedAt ?? (optionalKey(child) ? depth : undefined);
      return keyLines(key, at === undefined ? child.default : child.example).map((l) => line(l, at));
    }
    const at = commentedAt ?? (optionalSection(child as Doc) ? depth : undefined);
    return [line(`${key}:`, at), ...sectionLines(child as Doc, depth + 1, at)];
  });
}

export function defaultsYaml(): string {
  const tree: Doc = {};
  for (const [, spec] of OPTION_LIST) if (!spec.cliOnly) setAt(tree, spec.path, spec);
  return sectionLines(tree, 0).join('\n');
}

const BLOCKS: [string, () => string][] = [
  ['options', optionsTable],
  ['defaults', () => `\`\`\`yaml\n${defaultsYaml()}\n\`\`\``],
];

/** The reference page with its generated blocks replaced by what the table makes now. */
export function withReference(page: string): string {
  let text = page;
  for (const [name, make] of BLOCKS) {
    const begin = `<!-- ${name}: made by npm run docs:options from src/config/options.ts -->\n`;
    const end = `\n<!-- ${name} end -->`;
    const from = text.indexOf(begin);
    const to = text.indexOf(end, from);
    if (from < 0 || to < 0)
      throw new Error(`${REFERENCE_PAGE} has no ${name} block (${begin.trim()} ... ${end.trim()})`);
    text = text.slice(0, from + begin.length) + make() + text.slice(to);
  }
  return text;
}

/** npm run docs:options */
export function updateReference(file: string = REFERENCE_PAGE): void {
  writeFileSync(file, withReference(readFileSync(file, 'utf8')));
}
