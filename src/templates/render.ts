/**
 * Pure template rendering (REF-001 §5, `{{variable}}` syntax), shared by the render-test route, the
 * message pipeline and campaigns. Nothing here touches the database or global Mustache state.
 *
 * Rendering uses mustache with two deliberate differences from its defaults:
 * - HTML escaping is off: push titles and bodies are plain text, so `<b>&` must arrive as typed.
 * - Name lookup only sees the caller's own data (plain objects copied onto null prototypes, no
 *   inherited properties, no lambdas), so `{{constructor}}` or `{{name.length}}` cannot reach
 *   JavaScript internals, and the missing-variable analysis uses exactly the same lookup as the
 *   renderer, so what we report as missing is what rendered as empty.
 */
import Mustache from "mustache";
import { ApiError } from "../http/errors";

/** A variable a template declares (stored in `message_template_versions.variables`). */
export interface TemplateVariable {
  /** Variable name as used in the template; dotted names address nested objects (`user.name`). */
  name: string;
  /** A missing required variable fails rendering with `missing_required_variable`. */
  required: boolean;
  /** Used when a non-required variable is missing; without one it renders as "". */
  default?: string;
  description?: string;
}

/** The parts of a template version that rendering needs. */
export interface RenderableTemplate {
  title?: string | null;
  body?: string | null;
  dataTemplate?: Record<string, unknown> | null;
  variables?: readonly TemplateVariable[] | null;
}

/** The rendered message plus what was missing; missing non-required variables are warnings, not errors. */
export interface RenderedTemplate {
  title: string | null;
  body: string | null;
  data: Record<string, unknown>;
  /** Referenced or declared variables that were not supplied (rendered from their default or as ""). */
  missingVariables: string[];
  /** Human-readable notes for the render-test output, one per missing variable. */
  warnings: string[];
}

/** Syntax of a declared variable name: identifiers joined by dots (`user.first_name`). */
export const VARIABLE_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$/;

/** How deeply variables (and data templates) may nest; bounds recursion on hostile input. */
export const MAX_NESTING_DEPTH = 10;

// Explicit tags so a change to the global `Mustache.tags` elsewhere cannot alter our parsing.
const TAGS: [string, string] = ["{{", "}}"];
// Escaping off: push text is not HTML. Passed per call; the global Mustache.escape is never touched.
const RENDER_OPTIONS: Mustache.RenderOptions = { tags: TAGS, escape: (value: unknown) => String(value) };

type Token = [type: string, value: string, start: number, end: number, children?: Token[], ...rest: unknown[]];

/**
 * A bounded LRU for parsed templates. Mustache's own cache is an unbounded object; a long-running
 * worker rendering every version of every tenant's templates would grow it forever. Bounded by the
 * characters of its sources, not their count: a parsed template holds about 90 bytes of tokens per
 * tag, so a thousand long tag-dense sources (each parsed while its request was validated, even
 * when the request was refused) held gigabytes.
 */
class LruCache {
  private readonly entries = new Map<string, unknown>();
  private chars = 0;
  constructor(private readonly maxChars: number) {}
  get(key: string): unknown {
    const value = this.entries.get(key);
    if (value !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }
  set(key: string, value: unknown): void {
    if (this.entries.delete(key)) this.chars -= key.length;
    // mustache keys its cache by source and tags; a key past the whole budget is not kept at all.
    if (key.length > this.maxChars) return;
    this.entries.set(key, value);
    this.chars += key.length;
    for (const oldest of this.entries.keys()) {
      if (this.chars <= this.maxChars) break;
      this.entries.delete(oldest);
      this.chars -= oldest.length;
    }
  }
  clear(): void {
    this.entries.clear();
    this.chars = 0;
  }
  /** Characters of the sources held. */
  get size(): number {
    return this.chars;
  }
}

/** Characters of template source the parse cache keeps: thousands of typical templates. */
export const PARSE_CACHE_MAX_CHARS = 2_000_000;

/**
 * Most characters one template render may produce (title, body and data together): far above what
 * any provider takes (APNs and FCM stop at 4 KB, checked later with their own error), low enough
 * that a template repeating a long variable thousands of times is refused in microseconds instead
 * of building gigabytes of text on the API's only thread.
 */
export const MAX_RENDERED_CHARS = 65_536;

/** Thrown inside a render once it has produced more than its budget. */
class RenderBudgetExceeded extends Error {}

/** mustache's writer counting what it writes: every printed text and value is spent from `remaining`. */
class BudgetedWriter extends Mustache.Writer {
  remaining = Number.POSITIVE_INFINITY;

  override rawValue(token: string[]): string {
    return this.spend(super.rawValue(token));
  }

  override escapedValue(token: string[], context: Mustache.Context, config?: Mustache.RenderOptions): string {
    return this.spend(super.escapedValue(token, context, config));
  }

  override unescapedValue(token: string[], context: Mustache.Context): string {
    return this.spend(super.unescapedValue(token, context));
  }

  private spend(value: string): string {
    // mustache answers undefined for a value that prints nothing.
    if (value != null) {
      this.remaining -= String(value).length;
      if (this.remaining < 0) throw new RenderBudgetExceeded();
    }
    return value;
  }
}

// A private writer keeps our parse cache out of the module-global default writer.
const writer = new BudgetedWriter();
const parseCache = new LruCache(PARSE_CACHE_MAX_CHARS);
(writer as unknown as { templateCache: LruCache }).templateCache = parseCache;

/** Characters of template source whose parse is cached now (for tests of the bound). */
export function parseCacheChars(): number {
  return parseCache.size;
}

function parse(source: string): Token[] {
  return writer.parse(source, TAGS) as Token[];
}

type Lookup = { found: true; value: unknown } | { found: false };

/** A plain JSON object (not an array, not null). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Own-property path lookup in one view; primitives have no properties here. */
function resolvePath(view: unknown, segments: readonly string[]): Lookup {
  let current = view;
  for (const segment of segments) {
    if (!isRecord(current) || !Object.hasOwn(current, segment)) return { found: false };
    current = current[segment];
  }
  return { found: true, value: current };
}

/** Looks a name up the context stack (innermost first), as mustache does for sections. */
function lookupIn(stack: readonly unknown[], name: string): Lookup {
  if (name === ".") return { found: true, value: stack[stack.length - 1] };
  const segments = name.split(".");
  for (let i = stack.length - 1; i >= 0; i--) {
    const hit = resolvePath(stack[i], segments);
    if (hit.found) return hit;
  }
  return { found: false };
}

/** Mustache context whose lookup is {@link lookupIn}: no prototype chain, no lambdas. */
class SafeContext extends Mustache.Context {
  private readonly stack: readonly unknown[];
  constructor(view: unknown, parent?: SafeContext) {
    super(view, parent);
    this.stack = parent ? [...parent.stack, view] : [view];
  }
  override push(view: unknown): SafeContext {
    return new SafeContext(view, this);
  }
  override lookup(name: string): unknown {
    const hit = lookupIn(this.stack, name);
    return hit.found ? hit.value : undefined;
  }
}

/**
 * Why a template source cannot be used, or undefined when it parses. Called at create/update time
 * so a malformed template is a validation error then, never a failed send later.
 */
export function templateSyntaxError(source: string): string | undefined {
  let tokens: Token[];
  try {
    tokens = parse(source);
  } catch (error) {
    // Mustache reports unclosed tags/sections with a position; that message is the useful detail.
    return `invalid template syntax: ${(error as Error).message}`;
  }
  // An explicit stack, not recursion: rendering recurses once per section level, so the depth
  // bound must be checked here, at write time, without overflowing the stack on hostile input.
  const pending: Array<[list: readonly Token[], depth: number]> = [[tokens, 0]];
  for (let next = pending.pop(); next; next = pending.pop()) {
    const [list, depth] = next;
    for (const token of list) {
      const [type, value] = token;
      if (type === ">") return `partials ({{> ${value}}}) are not supported`;
      if ((type === "name" || type === "&" || type === "#" || type === "^") && value.trim() === "") return "empty tag {{}}";
      if (token[4]) {
        if (depth + 1 > MAX_NESTING_DEPTH) return `sections nest deeper than ${MAX_NESTING_DEPTH} levels`;
        pending.push([token[4], depth + 1]);
      }
    }
  }
  return undefined;
}

function referencedIn(source: string, into: string[]): void {
  const walk = (list: readonly Token[]): void => {
    for (const token of list) {
      const [type, value] = token;
      if ((type === "name" || type === "&" || type === "#" || type === "^") && value !== "." && !into.includes(value)) into.push(value);
      if (token[4]) walk(token[4]);
    }
  };
  walk(parse(source));
}

function forEachStringLeaf(value: unknown, visit: (source: string) => void): void {
  if (typeof value === "string") visit(value);
  else if (Array.isArray(value)) for (const item of value) forEachStringLeaf(item, visit);
  else if (isRecord(value)) for (const item of Object.values(value)) forEachStringLeaf(item, visit);
}

/**
 * Every variable name a template source (or a whole template: title, body and each data string)
 * references, in order of first appearance, including section names. Names inside a section are
 * as written: at render time they resolve against the section's value first, then outwards.
 */
export function referencedVariables(template: string | RenderableTemplate): string[] {
  const names: string[] = [];
  if (typeof template === "string") {
    referencedIn(template, names);
    return names;
  }
  if (template.title) referencedIn(template.title, names);
  if (template.body) referencedIn(template.body, names);
  forEachStringLeaf(template.dataTemplate ?? {}, (source) => referencedIn(source, names));
  return names;
}

type View = Record<string, unknown>;

function invalidVariables(errors: Record<string, string>): ApiError {
  return new ApiError("invalid_template_variables", "Template variables must be strings, numbers, booleans or objects of them", {
    variables: Object.keys(errors),
    errors,
  });
}

function kindOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return `a ${typeof value}`;
}

/**
 * Copies caller variables into null-prototype objects, expanding flat dotted keys
 * (`{"user.name": "x"}` ≡ `{"user": {"name": "x"}}`), and collects every value that is not a
 * string, finite number, boolean or nested object of those.
 */
function normalizeVariables(input: unknown): View {
  const errors: Record<string, string> = {};
  const root: View = Object.create(null) as View;
  if (!isRecord(input)) {
    throw invalidVariables({ variables: `must be an object, got ${kindOf(input)}` });
  }

  const copy = (value: unknown, path: string, depth: number): unknown => {
    if (typeof value === "string" || typeof value === "boolean") return value;
    if (typeof value === "number") {
      if (Number.isFinite(value)) return value;
      errors[path] = "must be a finite number";
      return undefined;
    }
    if (isRecord(value)) {
      if (depth >= MAX_NESTING_DEPTH) {
        errors[path] = `nests deeper than ${MAX_NESTING_DEPTH} levels`;
        return undefined;
      }
      const out: View = Object.create(null) as View;
      for (const [key, child] of Object.entries(value)) insert(out, key, child, path, depth + 1);
      return out;
    }
    errors[path] = `must be a string, number, boolean or object, got ${kindOf(value)}`;
    return undefined;
  };

  const insert = (target: View, key: string, value: unknown, parentPath: string, depth: number): void => {
    const path = parentPath ? `${parentPath}.${key}` : key;
    const segments = key.split(".");
    if (segments.some((s) => s === "")) {
      errors[path] = "is not a valid variable name";
      return;
    }
    let node = target;
    for (const segment of segments.slice(0, -1)) {
      const existing = node[segment];
      if (existing === undefined) node = node[segment] = Object.create(null) as View;
      else if (isRecord(existing)) node = existing;
      else {
        errors[path] = `conflicts with the value given for ${segment}`;
        return;
      }
    }
    const last = segments[segments.length - 1]!;
    const copied = copy(value, path, depth + segments.length - 1);
    if (copied === undefined) return;
    const existing = node[last];
    if (existing === undefined) node[last] = copied;
    else if (isRecord(existing) && isRecord(copied)) for (const [k, v] of Object.entries(copied)) insert(existing, k, v, path, depth);
    else errors[path] = "is given more than once";
  };

  for (const [key, value] of Object.entries(input)) insert(root, key, value, "", 0);
  if (Object.keys(errors).length > 0) throw invalidVariables(errors);
  return root;
}

/** Sets `value` at a dotted path unless something non-object is in the way; returns false then. */
function setPath(view: View, name: string, value: unknown): boolean {
  const segments = name.split(".");
  let node = view;
  for (const segment of segments.slice(0, -1)) {
    const existing = node[segment];
    if (existing === undefined) node = node[segment] = Object.create(null) as View;
    else if (isRecord(existing)) node = existing;
    else return false;
  }
  node[segments[segments.length - 1]!] = value;
  return true;
}

/**
 * Walks a template's tokens the way mustache renders them and records names that resolve nowhere
 * (rendered as "") and names that resolve to an object where text is printed ("[object Object]").
 */
function analyse(source: string, view: View, missing: Set<string>, objects: Set<string>): void {
  const walk = (tokens: readonly Token[], stack: readonly unknown[]): void => {
    for (const token of tokens) {
      const [type, name] = token;
      if (type === "name" || type === "&") {
        const hit = lookupIn(stack, name);
        if (!hit.found) missing.add(name);
        else if (isRecord(hit.value)) objects.add(name);
      } else if (type === "#") {
        const hit = lookupIn(stack, name);
        if (!hit.found) missing.add(name);
        // Mirrors mustache: truthy objects/strings/numbers become the inner context, `true` keeps it.
        else if (hit.value) walk(token[4] ?? [], hit.value === true ? stack : [...stack, hit.value]);
      } else if (type === "^") {
        const hit = lookupIn(stack, name);
        if (!hit.found) missing.add(name);
        if (!hit.found || !hit.value) walk(token[4] ?? [], stack);
      }
    }
  };
  walk(parse(source), [view]);
}

function renderString(source: string, view: View): string {
  return writer.render(source, new SafeContext(view), undefined, RENDER_OPTIONS);
}

function renderData(value: unknown, view: View): unknown {
  if (typeof value === "string") return renderString(value, view);
  if (Array.isArray(value)) return value.map((item) => renderData(item, view));
  // fromEntries defines own properties, so a "__proto__" key stays data instead of a prototype.
  if (isRecord(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, renderData(v, view)]));
  return value;
}

/** The message text of a render, without its missing-variable notes. */
export function renderedContent({ title, body, data }: RenderedTemplate): Pick<RenderedTemplate, "title" | "body" | "data"> {
  return { title, body, data };
}

/**
 * Renders a template version with the given variables: title, body and every string leaf of the
 * data template (non-strings pass through). Throws `missing_required_variable` (details
 * `{variables}`) when a declared required variable is absent and `invalid_template_variables` for
 * values that are not strings/numbers/booleans/objects or objects printed as text. Missing
 * non-required variables use their declared default or "" and are reported in `missingVariables`.
 */
export function renderTemplate(template: RenderableTemplate, variables: unknown = {}): RenderedTemplate {
  const view = normalizeVariables(variables);
  const declared = template.variables ?? [];
  const sources = [template.title, template.body].filter((s): s is string => typeof s === "string");
  forEachStringLeaf(template.dataTemplate ?? {}, (s) => sources.push(s));

  const missingRequired = declared.filter((v) => v.required && !lookupIn([view], v.name).found).map((v) => v.name);
  if (missingRequired.length > 0) {
    throw new ApiError("missing_required_variable", `Missing required template variable(s): ${missingRequired.join(", ")}`, { variables: missingRequired });
  }

  // name → note; a Map keeps one warning per variable however it came to be missing.
  const notes = new Map<string, string>();
  const blocked: Record<string, string> = {};
  for (const variable of declared) {
    if (lookupIn([view], variable.name).found) continue;
    if (variable.default === undefined) notes.set(variable.name, `variable "${variable.name}" was not provided; rendered as an empty string`);
    else if (setPath(view, variable.name, variable.default)) notes.set(variable.name, `variable "${variable.name}" was not provided; used its default`);
    else blocked[variable.name] = "its default cannot be applied: a parent value is not an object";
  }
  if (Object.keys(blocked).length > 0) throw invalidVariables(blocked);

  const missing = new Set<string>();
  const objects = new Set<string>();
  for (const source of sources) analyse(source, view, missing, objects);
  if (objects.size > 0) {
    throw invalidVariables(Object.fromEntries([...objects].map((name) => [name, "is an object but the template prints it as text"])));
  }
  for (const name of missing) {
    if (!notes.has(name)) notes.set(name, `variable "${name}" was not provided; rendered as an empty string`);
  }
  const missingVariables = [...notes.keys()].sort();

  // Rendering is synchronous: the budget is this render's alone.
  writer.remaining = MAX_RENDERED_CHARS;
  try {
    return {
      title: typeof template.title === "string" ? renderString(template.title, view) : null,
      body: typeof template.body === "string" ? renderString(template.body, view) : null,
      data: renderData(template.dataTemplate ?? {}, view) as Record<string, unknown>,
      missingVariables,
      warnings: missingVariables.map((name) => notes.get(name)!),
    };
  } catch (error) {
    if (!(error instanceof RenderBudgetExceeded)) throw error;
    throw new ApiError("message_too_large", `The rendered template would be longer than ${MAX_RENDERED_CHARS} characters`, { limit_chars: MAX_RENDERED_CHARS });
  } finally {
    writer.remaining = Number.POSITIVE_INFINITY;
  }
}
