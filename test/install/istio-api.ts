// SPDX-License-Identifier: Apache-2.0
// An offline check of IstioOperator files against Istio's own definitions,
// as istioctl validates them: the spec's fields from the Go types
// (operator/pkg/apis/types.go, decoded with unknown fields disallowed) and
// spec.values from values_types.proto (strict jsonpb). Kubernetes types inside
// k8s (affinity, env, volumes, ...) are not descended into, and free-form
// fields (meshConfig, unvalidatedValues, google.protobuf.Struct/Value) accept
// anything, as in istioctl. Setup copies both files into .skein/istio/apis.
import fs from 'node:fs';
import protobuf from 'protobufjs';

/** A field's shape: a scalar, one of the Go structs, or opaque (not checked). */
type GoType =
  | { kind: 'string' | 'number' | 'boolean' | 'any' | 'opaque' }
  | { kind: 'struct'; name: string }
  | { kind: 'array'; of: GoType }
  | { kind: 'map'; of: GoType };

interface GoStruct { fields: Map<string, GoType>; inline: string[] }

/** The structs of a Go file with their JSON field names (kubetype-gen output: one field per line). */
export function parseGoStructs(source: string): Map<string, GoStruct> {
  const structs = new Map<string, GoStruct>();
  const block = /^type (\w+) struct \{\n([\s\S]*?)^\}/gm;
  for (const m of source.matchAll(block)) {
    const [, name = '', body = ''] = m;
    const s: GoStruct = { fields: new Map(), inline: [] };
    for (const raw of body.split('\n')) {
      const line = raw.trim();
      if (line === '' || line.startsWith('//')) continue;
      const f = /^(\w+(?:\.\w+)?)(?:\s+([^`\s]+))?(?:\s+`json:"([^"]*)"+`)?$/.exec(line);
      if (f === null) throw new Error(`${name}: cannot read field line: ${line}`);
      // `Name Type` or an embedded `Type`, either with an optional json tag.
      const [, first = '', second, tag] = f;
      const type = second ?? first;
      const jsonName = tag?.split(',')[0] ?? '';
      if (jsonName === '-') continue;
      if (jsonName === '') {
        // Embedded without a name (ComponentSpec) or `json:",inline"` (metav1.TypeMeta).
        s.inline.push(type);
        continue;
      }
      s.fields.set(jsonName, goType(type));
    }
    structs.set(name, s);
  }
  return structs;
}

function goType(t: string): GoType {
  if (t.startsWith('*')) return goType(t.slice(1));
  if (t.startsWith('[]')) return { kind: 'array', of: goType(t.slice(2)) };
  if (t.startsWith('map[string]')) return { kind: 'map', of: goType(t.slice('map[string]'.length)) };
  if (t === 'string') return { kind: 'string' };
  if (/^u?int(8|16|32|64)?$|^float(32|64)$/.test(t)) return { kind: 'number' };
  if (t === 'bool' || t === 'BoolValue') return { kind: 'boolean' };
  if (t === 'any' || t === 'json.RawMessage') return { kind: 'any' };
  if (t.includes('.')) return { kind: 'opaque' }; // corev1.Affinity and friends
  return { kind: 'struct', name: t };
}

const typeMeta = new Map<string, GoType>([['apiVersion', { kind: 'string' }], ['kind', { kind: 'string' }]]);

function fieldsOf(structs: Map<string, GoStruct>, name: string): Map<string, GoType> {
  const s = structs.get(name);
  if (s === undefined) throw new Error(`no Go struct ${name}`);
  const out = new Map(s.fields);
  for (const inl of s.inline) {
    const more = inl === 'metav1.TypeMeta' ? typeMeta : fieldsOf(structs, inl);
    for (const [k, v] of more) out.set(k, v);
  }
  return out;
}

const describe = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);
const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function checkGo(structs: Map<string, GoStruct>, t: GoType, v: unknown, at: string, problems: string[]): void {
  switch (t.kind) {
    case 'any':
    case 'opaque':
      return;
    case 'string':
    case 'number':
    case 'boolean':
      if (typeof v !== t.kind) problems.push(`${at}: want ${t.kind}, got ${describe(v)}`);
      return;
    case 'array':
      if (!Array.isArray(v)) { problems.push(`${at}: want a list, got ${describe(v)}`); return; }
      v.forEach((x, i) => { checkGo(structs, t.of, x, `${at}[${i}]`, problems); });
      return;
    case 'map':
      if (!isObject(v)) { problems.push(`${at}: want a map, got ${describe(v)}`); return; }
      for (const [k, x] of Object.entries(v)) checkGo(structs, t.of, x, `${at}.${k}`, problems);
      return;
    case 'struct': {
      if (!isObject(v)) { problems.push(`${at}: want an object (${t.name}), got ${describe(v)}`); return; }
      const fields = fieldsOf(structs, t.name);
      for (const [k, x] of Object.entries(v)) {
        const ft = fields.get(k);
        if (ft === undefined) { problems.push(`${at}.${k}: unknown field of ${t.name} (known: ${[...fields.keys()].join(', ')})`); continue; }
        checkGo(structs, ft, x, `${at}.${k}`, problems);
      }
    }
  }
}

// google.protobuf types that jsonpb reads as plain JSON.
const freeForm = new Set(['google.protobuf.Struct', 'google.protobuf.Value', 'google.protobuf.ListValue', 'google.protobuf.Any']);
const wrappers: Record<string, 'string' | 'number' | 'boolean'> = {
  'google.protobuf.StringValue': 'string', 'google.protobuf.BoolValue': 'boolean', 'google.protobuf.BytesValue': 'string',
  'google.protobuf.Int32Value': 'number', 'google.protobuf.UInt32Value': 'number', 'google.protobuf.Int64Value': 'number',
  'google.protobuf.UInt64Value': 'number', 'google.protobuf.FloatValue': 'number', 'google.protobuf.DoubleValue': 'number',
};

const fullName = (t: protobuf.ReflectionObject): string => t.fullName.replace(/^\./, '');
const lowerCamel = (s: string): string => s.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());

function checkScalar(type: string, v: unknown, at: string, problems: string[]): void {
  const want = type === 'string' || type === 'bytes' ? 'string' : type === 'bool' ? 'boolean' : 'number';
  // jsonpb also takes 64-bit integers as strings.
  const ok = typeof v === want || (want === 'number' && /64$/.test(type) && typeof v === 'string');
  if (!ok) problems.push(`${at}: want ${want} (${type}), got ${describe(v)}`);
}

function checkField(field: protobuf.Field, v: unknown, at: string, problems: string[]): void {
  if (field.repeated && !(field instanceof protobuf.MapField)) {
    if (!Array.isArray(v)) { problems.push(`${at}: want a list, got ${describe(v)}`); return; }
    v.forEach((x, i) => { checkValue(field, x, `${at}[${i}]`, problems); });
    return;
  }
  if (field instanceof protobuf.MapField) {
    if (!isObject(v)) { problems.push(`${at}: want a map, got ${describe(v)}`); return; }
    for (const [k, x] of Object.entries(v)) checkValue(field, x, `${at}.${k}`, problems);
    return;
  }
  checkValue(field, v, at, problems);
}

function checkValue(field: protobuf.Field, v: unknown, at: string, problems: string[]): void {
  const t = field.resolve().resolvedType;
  if (t === null) { checkScalar(field.type, v, at, problems); return; }
  if (t instanceof protobuf.Enum) {
    if (typeof v === 'string' ? !(v in t.values) : typeof v !== 'number') problems.push(`${at}: want one of ${Object.keys(t.values).join(', ')}, got ${JSON.stringify(v)}`);
    return;
  }
  const name = fullName(t);
  if (freeForm.has(name)) return;
  const w = wrappers[name];
  if (w !== undefined) { if (typeof v !== w) problems.push(`${at}: want ${w}, got ${describe(v)}`); return; }
  if (name.endsWith('.IntOrString')) {
    if (typeof v !== 'string' && typeof v !== 'number') problems.push(`${at}: want an int or a string, got ${describe(v)}`);
    return;
  }
  checkMessage(t, v, at, problems);
}

function checkMessage(t: protobuf.Type, v: unknown, at: string, problems: string[]): void {
  if (!isObject(v)) { problems.push(`${at}: want an object (${t.name}), got ${describe(v)}`); return; }
  for (const [k, x] of Object.entries(v)) {
    const field = t.fieldsArray.find((f) => f.name === k || lowerCamel(f.name) === k);
    if (field === undefined) { problems.push(`${at}.${k}: unknown field of ${t.name}`); continue; }
    // jsonpb treats null as "unset" for every field.
    if (x === null) continue;
    checkField(field, x, `${at}.${k}`, problems);
  }
}

export interface IstioApi {
  /** Every problem with the document, each naming its path; empty when istioctl would accept it. */
  check(doc: unknown): string[];
  /** The profiles istioctl ships (spec.profile must be one of them). */
  profiles: readonly string[];
}

export function loadIstioApi(dir: string): IstioApi {
  if (!fs.existsSync(`${dir}/apis/types.go`)) throw new Error(`${dir} has no Istio install API files; run 'npm run setup'`);
  const structs = parseGoStructs(fs.readFileSync(`${dir}/apis/types.go`, 'utf8'));
  const root = new protobuf.Root().loadSync(`${dir}/apis/values_types.proto`, { keepCase: true });
  root.resolveAll();
  const values = root.lookupType('istio.operator.v1alpha1.Values');
  const profiles = fs.readdirSync(`${dir}/profiles`).filter((f) => f.endsWith('.yaml')).map((f) => f.slice(0, -5)).sort();
  return {
    profiles,
    check(doc: unknown): string[] {
      const problems: string[] = [];
      if (!isObject(doc)) return ['document: want an object'];
      if (doc.apiVersion !== 'install.istio.io/v1alpha1') problems.push(`apiVersion: want install.istio.io/v1alpha1, got ${JSON.stringify(doc.apiVersion)}`);
      if (doc.kind !== 'IstioOperator') problems.push(`kind: want IstioOperator, got ${JSON.stringify(doc.kind)}`);
      checkGo(structs, { kind: 'struct', name: 'IstioOperator' }, doc, '', problems);
      const spec = doc.spec;
      if (isObject(spec)) {
        if (typeof spec.profile === 'string' && !profiles.includes(spec.profile)) problems.push(`.spec.profile: ${spec.profile} is not one of ${profiles.join(', ')}`);
        if (spec.values !== undefined) checkMessage(values, spec.values, '.spec.values', problems);
      }
      return problems.map((p) => p.replace(/^\./, ''));
    },
  };
}
