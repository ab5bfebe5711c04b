import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { z } from 'zod';
import { OPTION_LIST, type OptionId } from './options.js';
import { type Doc, setAt, valueAt } from './paths.js';

/**
 * The YAML configuration file: its keys are the options' paths. Unknown keys and wrong values are
 * refused at start with the key named (strict objects at every level).
 */
function schemaOf(shape: Doc): z.ZodType {
  const fields: Record<string, z.ZodType> = {};
  for (const [key, field] of Object.entries(shape)) {
    fields[key] = (field instanceof z.ZodType ? field : schemaOf(field as Doc)).optional();
  }
  return z.strictObject(fields);
}

const shape: Doc = {};
for (const [, spec] of OPTION_LIST) if (!spec.cliOnly) setAt(shape, spec.path, spec.kind.schema);
export const fileSchema = schemaOf(shape);

export class ConfigFileError extends Error {}

/** Checks a parsed document; the error names the key. */
export function fileValues(doc: unknown): Map<OptionId, unknown> {
  const result = fileSchema.safeParse(doc ?? {});
  if (!result.success) {
    const issue = result.error.issues[0];
    const key = issue ? [...issue.path, ...('keys' in issue ? (issue.keys as string[]) : [])].join('.') : '';
    throw new ConfigFileError(`${key || '(top level)'}: ${issue?.message ?? 'invalid'}`);
  }
  const values = new Map<OptionId, unknown>();
  for (const [id, spec] of OPTION_LIST) {
    const value = spec.cliOnly ? undefined : valueAt(result.data, spec.path);
    if (value !== undefined) values.set(id, value);
  }
  return values;
}

/** Reads and checks the file; the error names the file and the key. */
export function readConfigFile(file: string): Map<OptionId, unknown> {
  try {
    return fileValues(parse(readFileSync(file, 'utf8')));
  } catch (err) {
    throw new ConfigFileError(`${file}: ${(err as Error).message}`);
  }
}
