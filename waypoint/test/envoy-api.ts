// SPDX-License-Identifier: Apache-2.0
// Test helper: checks Envoy config fragments (proto-JSON, as they appear in
// EnvoyFilter patches) against Envoy's own API protos, which
// @grpc/grpc-js-xds ships under deps/. protobufjs's fromObject ignores keys it
// does not know, so a strict walk comes first: every key must be a field
// (proto name or its lowerCamelCase json name, both of which Envoy accepts),
// every value must have the field's JSON type, enums must name a defined
// value, Any must name a loaded type, and the protoc-gen-validate rules Envoy
// enforces at load time (the common subset) must hold.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import protobuf from 'protobufjs';

const require = createRequire(import.meta.url);
const xdsDeps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
const includes = [
  join(xdsDeps, 'envoy-api'),
  join(xdsDeps, 'xds'),
  join(xdsDeps, 'protoc-gen-validate'),
  join(xdsDeps, 'googleapis'),
  // google/protobuf/descriptor.proto, which the validate and udpa options import.
  dirname(require.resolve('protobufjs/package.json')),
];

/** Loads the given .proto files (paths relative to the Envoy API root) and everything they import. */
export function loadEnvoyProtos(files: readonly string[]): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    for (const inc of includes) {
      const p = join(inc, target);
      if (existsSync(p)) return p;
    }
    return target; // protobufjs has google/protobuf/{any,struct,...} built in
  };
  root.loadSync([...files], { keepCase: true });
  root.resolveAll();
  return root;
}

/** Every problem found, as `path: message`; empty when the fragment is valid. */
export function checkEnvoyJson(root: protobuf.Root, typeName: string, value: unknown): string[] {
  const errors: string[] = [];
  checkMessage(root, root.lookupType(typeName), value, '$', errors);
  return errors;
}

/** The fragment as a protobuf message (after a strict check that must pass); proto field names. */
export function toEnvoyMessage(root: protobuf.Root, typeName: string, value: unknown): protobuf.Message {
  const errors = checkEnvoyJson(root, typeName, value);
  if (errors.length > 0) throw new Error(`not a valid ${typeName}:\n  ${errors.join('\n  ')}`);
  const type = root.lookupType(typeName);
  const msg = type.fromObject(protoNames(root, type, value) as Record<string, unknown>);
  const why = type.verify(msg);
  if (why !== null) throw new Error(`${typeName}: ${why}`);
  return msg;
}

const WRAPPERS: Readonly<Record<string, string>> = {
  '.google.protobuf.DoubleValue': 'double', '.google.protobuf.FloatValue': 'float',
  '.google.protobuf.Int64Value': 'int64', '.google.protobuf.UInt64Value': 'uint64',
  '.google.protobuf.Int32Value': 'int32', '.google.protobuf.UInt32Value': 'uint32',
  '.google.protobuf.BoolValue': 'bool', '.google.protobuf.StringValue': 'string', '.google.protobuf.BytesValue': 'bytes',
};

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function fieldByJsonKey(type: protobuf.Type, key: string): protobuf.Field | undefined {
  return type.fields[key] ?? type.fieldsArray.find((f) => f.jsonName === key);
}

function checkMessage(root: protobuf.Root, type: protobuf.Type, value: unknown, path: string, errors: string[]): void {
  const name = type.fullName;
  const wrapped = WRAPPERS[name];
  if (wrapped !== undefined) {
    checkScalar(wrapped, value, path, errors);
    return;
  }
  switch (name) {
    case '.google.protobuf.Struct':
      if (!isPlainObject(value)) errors.push(`${path}: a Struct must be a JSON object`);
      return;
    case '.google.protobuf.Value':
      return;
    case '.google.protobuf.ListValue':
      if (!Array.isArray(value)) errors.push(`${path}: a ListValue must be a JSON array`);
      return;
    case '.google.protobuf.Duration':
      if (typeof value !== 'string' || !/^-?\d+(\.\d{1,9})?s$/.test(value)) errors.push(`${path}: a Duration is a string like "1.5s"`);
      return;
    case '.google.protobuf.Timestamp':
      if (typeof value !== 'string' || Number.isNaN(Date.parse(value))) errors.push(`${path}: a Timestamp is an RFC 3339 string`);
      return;
    case '.google.protobuf.Any':
      checkAny(root, value, path, errors);
      return;
  }
  if (!isPlainObject(value)) {
    errors.push(`${path}: ${name.slice(1)} must be a JSON object`);
    return;
  }
  const seenOneofs = new Map<string, string>();
  for (const [key, v] of Object.entries(value)) {
    const field = fieldByJsonKey(type, key);
    const at = `${path}.${key}`;
    if (field === undefined) {
      errors.push(`${at}: no field '${key}' in ${name.slice(1)} (known: ${type.fieldsArray.map((f) => f.name).join(', ')})`);
      continue;
    }
    if (field.options?.deprecated === true) errors.push(`${at}: field '${field.name}' is deprecated`);
    const oneof = field.partOf;
    if (oneof !== null) {
      const other = seenOneofs.get(oneof.name);
      if (other !== undefined) errors.push(`${at}: '${field.name}' and '${other}' are both set, but are one of '${oneof.name}'`);
      seenOneofs.set(oneof.name, field.name);
    }
    checkField(root, field, v, at, errors);
  }
  for (const oneof of type.oneofsArray) {
    if (oneof.options?.['(validate.required)'] === true && !seenOneofs.has(oneof.name)) {
      errors.push(`${path}: one of ${oneof.oneof.join(', ')} is required`);
    }
  }
  for (const field of type.fieldsArray) {
    // protoc-gen-validate applies a oneof member's rules only when that member is set.
    if (field.partOf !== null) continue;
    const rules = validateRules(field);
    const required = (rules?.message as { required?: boolean } | undefined)?.required === true;
    if (required && value[field.name] === undefined && value[field.jsonName] === undefined) {
      errors.push(`${path}: '${field.name}' is required`);
    }
  }
}

function checkAny(root: protobuf.Root, value: unknown, path: string, errors: string[]): void {
  if (!isPlainObject(value)) {
    errors.push(`${path}: an Any must be a JSON object with "@type"`);
    return;
  }
  const url = value['@type'];
  if (typeof url !== 'string' || !url.includes('/')) {
    errors.push(`${path}: an Any needs "@type": "type.googleapis.com/<message>"`);
    return;
  }
  const typeName = url.slice(url.lastIndexOf('/') + 1);
  let inner: protobuf.Type;
  try {
    inner = root.lookupType(typeName);
  } catch {
    errors.push(`${path}."@type": no message ${typeName} in the loaded Envoy protos`);
    return;
  }
  const rest = Object.fromEntries(Object.entries(value).filter(([k]) => k !== '@type'));
  // Well-known types inside an Any keep their JSON form under "value".
  const body = inner.fullName.startsWith('.google.protobuf.') && 'value' in rest ? rest.value : rest;
  checkMessage(root, inner, body, path, errors);
}

function checkField(root: protobuf.Root, field: protobuf.Field, value: unknown, path: string, errors: string[]): void {
  const rules = validateRules(field);
  if (field instanceof protobuf.MapField) {
    if (!isPlainObject(value)) {
      errors.push(`${path}: map '${field.name}' must be a JSON object`);
      return;
    }
    for (const [k, v] of Object.entries(value)) checkSingle(root, field, v, `${path}.${k}`, undefined, errors);
    return;
  }
  if (field.repeated) {
    if (!Array.isArray(value)) {
      errors.push(`${path}: repeated '${field.name}' must be a JSON array`);
      return;
    }
    const r = rules?.repeated as { min_items?: unknown; max_items?: unknown; items?: Record<string, unknown> } | undefined;
    const min = num(r?.min_items);
    const max = num(r?.max_items);
    if (min !== undefined && value.length < min) errors.push(`${path}: at least ${min} item(s) required`);
    if (max !== undefined && value.length > max) errors.push(`${path}: at most ${max} item(s) allowed`);
    value.forEach((v, i) => { checkSingle(root, field, v, `${path}[${i}]`, r?.items, errors); });
    return;
  }
  checkSingle(root, field, value, path, rules, errors);
}

function checkSingle(root: protobuf.Root, field: protobuf.Field, value: unknown, path: string, rules: Record<string, unknown> | undefined, errors: string[]): void {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) {
    checkMessage(root, resolved, value, path, errors);
    return;
  }
  if (resolved instanceof protobuf.Enum) {
    const known = typeof value === 'string' ? value in resolved.values : typeof value === 'number' && Object.values(resolved.values).includes(value);
    if (!known) errors.push(`${path}: ${JSON.stringify(value)} is not a value of enum ${resolved.fullName.slice(1)} (${Object.keys(resolved.values).join(', ')})`);
    return;
  }
  if (!checkScalar(field.type, value, path, errors)) return;
  checkScalarRules(field.type, value, rules, path, errors);
}

const INT_RANGES: Readonly<Record<string, readonly [number, number]>> = {
  int32: [-(2 ** 31), 2 ** 31 - 1], sint32: [-(2 ** 31), 2 ** 31 - 1], sfixed32: [-(2 ** 31), 2 ** 31 - 1],
  uint32: [0, 2 ** 32 - 1], fixed32: [0, 2 ** 32 - 1],
};
const INT64 = new Set(['int64', 'sint64', 'sfixed64', 'uint64', 'fixed64']);

/** The JSON type proto3's JSON mapping gives a scalar; false when it is wrong. */
function checkScalar(type: string, value: unknown, path: string, errors: string[]): boolean {
  const bad = (want: string): false => { errors.push(`${path}: ${JSON.stringify(value)} is not ${want} (${type})`); return false; };
  const range = INT_RANGES[type];
  if (range !== undefined) {
    const n = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < range[0] || n > range[1]) return bad(`an integer in [${range[0]}, ${range[1]}]`);
    return true;
  }
  if (INT64.has(type)) {
    const ok = (typeof value === 'number' && Number.isSafeInteger(value)) || (typeof value === 'string' && /^-?\d+$/.test(value));
    if (!ok || (type.startsWith('u') || type === 'fixed64') && String(value).startsWith('-')) return bad('an integer (number or decimal string)');
    return true;
  }
  switch (type) {
    case 'double':
    case 'float':
      return typeof value === 'number' || value === 'NaN' || value === 'Infinity' || value === '-Infinity' ? true : bad('a number');
    case 'bool':
      return typeof value === 'boolean' ? true : bad('true or false');
    case 'string':
      return typeof value === 'string' ? true : bad('a string');
    case 'bytes':
      return typeof value === 'string' && /^[A-Za-z0-9+/_-]*={0,2}$/.test(value) ? true : bad('base64');
    default:
      return bad(`a known scalar type`);
  }
}

/** The protoc-gen-validate rules Envoy's config uses most: numeric bounds, string lengths and prefixes. */
function checkScalarRules(type: string, value: unknown, rules: Record<string, unknown> | undefined, path: string, errors: string[]): void {
  const r = rules?.[type === 'sint32' || type === 'sfixed32' ? 'int32' : type] as Record<string, unknown> | undefined;
  if (r === undefined) return;
  if (type === 'string') {
    const s = value as string;
    const len = Array.from(s).length; // code points, as protoc-gen-validate counts
    const minLen = num(r.min_len);
    const maxLen = num(r.max_len);
    const minBytes = num(r.min_bytes);
    if (minLen !== undefined && len < minLen) errors.push(`${path}: must be at least ${minLen} character(s)`);
    if (maxLen !== undefined && len > maxLen) errors.push(`${path}: must be at most ${maxLen} character(s)`);
    if (minBytes !== undefined && Buffer.byteLength(s) < minBytes) errors.push(`${path}: must be at least ${minBytes} byte(s)`);
    if (typeof r.prefix === 'string' && !s.startsWith(r.prefix)) errors.push(`${path}: must start with '${r.prefix}'`);
    return;
  }
  const n = Number(value);
  const bound = (key: string, ok: (b: number) => boolean, what: string): void => {
    const b = num(r[key]);
    if (b !== undefined && !ok(b)) errors.push(`${path}: must be ${what} ${b}`);
  };
  bound('const', (b) => n === b, '=');
  bound('lt', (b) => n < b, '<');
  bound('lte', (b) => n <= b, '<=');
  bound('gt', (b) => n > b, '>');
  bound('gte', (b) => n >= b, '>=');
}

/** A rule's bound: protobufjs gives numbers, or Long-like objects / strings for 64-bit ones. */
function num(v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number') return v;
  if (typeof v === 'string') return Number(v);
  if (typeof v === 'object' && 'toNumber' in v && typeof v.toNumber === 'function') return (v as { toNumber: () => number }).toNumber();
  return undefined;
}

function validateRules(field: protobuf.Field): Record<string, unknown> | undefined {
  const parsed = (field as { parsedOptions?: Record<string, unknown>[] | null }).parsedOptions ?? [];
  for (const o of parsed) {
    const r = o['(validate.rules)'];
    if (isPlainObject(r)) return r;
  }
  return undefined;
}

/** Rewrites json-name keys to proto names, which is what fromObject of a keepCase root expects. */
function protoNames(root: protobuf.Root, type: protobuf.Type, value: unknown): unknown {
  if (!isPlainObject(value)) return value;
  if (type.fullName === '.google.protobuf.Any') {
    const url = String(value['@type']);
    const inner = root.lookupType(url.slice(url.lastIndexOf('/') + 1));
    if (inner.fullName.startsWith('.google.protobuf.')) return value;
    return { ...(protoNames(root, inner, value) as Record<string, unknown>), '@type': url };
  }
  if (type.fullName === '.google.protobuf.Struct' || type.fullName === '.google.protobuf.Value') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    const f = fieldByJsonKey(type, k);
    if (f === undefined) continue;
    const t = f.resolvedType;
    out[f.name] = t instanceof protobuf.Type
      ? (Array.isArray(v) ? v.map((x) => protoNames(root, t, x)) : protoNames(root, t, v))
      : v;
  }
  return out;
}
