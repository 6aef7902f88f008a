// Reads twilio-node's TwiML builders; prints what they can build as JSON (run by generate.py only).
// With --build, builds documents with them instead (for the verdict corpus).
//
// Two sources, both twilio-node's own: the TypeScript declarations (read with the TypeScript
// compiler's parser, never with regular expressions) give each class's builder methods, each
// method's attribute interface with its value types (boolean, number, string, a union of string
// literals = enum, an array of such a union = enum list) and its text argument; running each
// builder method on a live document gives the tag it writes and the attribute names as they
// appear in the XML.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import ts from "typescript";

const require = createRequire(import.meta.url);
const twilioDir = path.dirname(require.resolve("twilio/package.json"));
const twilioVersion = JSON.parse(fs.readFileSync(path.join(twilioDir, "package.json"), "utf8")).version;

const ROOTS = {
  voice: "VoiceResponse",
  messaging: "MessagingResponse",
};

function declarations(rootName) {
  const file = path.join(twilioDir, "lib", "twiml", rootName + ".d.ts");
  const source = ts.createSourceFile(file, fs.readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true);
  const classes = new Map(); // class name -> ClassDeclaration
  const aliases = new Map(); // type alias name -> [string literal values] | null
  const interfaces = new Map(); // interface name -> InterfaceDeclaration
  const visit = (node) => {
    if (ts.isClassDeclaration(node) && node.name) {
      classes.set(node.name.text, node);
    } else if (ts.isTypeAliasDeclaration(node)) {
      const t = node.type;
      const literals = (ts.isUnionTypeNode(t) ? t.types : [t]).map((m) =>
        ts.isLiteralTypeNode(m) && ts.isStringLiteral(m.literal) ? m.literal.text : null,
      );
      aliases.set(node.name.text, literals.includes(null) ? null : literals);
    } else if (ts.isInterfaceDeclaration(node)) {
      interfaces.set(node.name.text, node);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return { classes, aliases, interfaces };
}

function typeName(node) {
  // `VoiceResponse.Gather` -> "Gather"; `XMLElement` -> "XMLElement".
  if (!node || !ts.isTypeReferenceNode(node)) return null;
  const n = node.typeName;
  return ts.isQualifiedName(n) ? n.right.text : n.text;
}

function memberName(m) {
  return ts.isIdentifier(m.name) || ts.isStringLiteral(m.name) ? m.name.text : m.name.getText();
}

function valueType(node, aliases) {
  switch (node.kind) {
    case ts.SyntaxKind.BooleanKeyword:
      return { type: "boolean" };
    case ts.SyntaxKind.NumberKeyword:
      return { type: "number" };
    case ts.SyntaxKind.StringKeyword:
      return { type: "string" };
    default:
      break;
  }
  if (ts.isArrayTypeNode(node)) {
    const inner = valueType(node.elementType, aliases);
    if (inner.type === "enum") return { type: "enum_list", values: inner.values, alias: inner.alias };
    return { type: "list:" + inner.type };
  }
  const alias = typeName(node);
  if (alias && aliases.has(alias)) {
    const values = aliases.get(alias);
    return values ? { type: "enum", values, alias } : { type: "unknown:" + alias };
  }
  return { type: "unknown:" + node.getText() };
}

function describe(channel) {
  const rootName = ROOTS[channel];
  const { classes, aliases, interfaces } = declarations(rootName);
  const Root = require(path.join(twilioDir, "lib", "twiml", rootName + ".js"));
  const elements = {};
  const marker = (name) => "@" + name + "@";
  // Walk live objects from the root so every method runs on a real parent.
  const todo = [[rootName, new Root()]];
  elements[channel + ":" + rootName] = { tag: "Response", text: null, attributes: {}, children: [] };
  const seen = new Set();
  while (todo.length) {
    const [className, live] = todo.shift();
    if (seen.has(className)) continue;
    seen.add(className);
    const eid = channel + ":" + className;
    const decl = classes.get(className);
    const methods = new Map();
    for (const m of decl.members) {
      if (!ts.isMethodDeclaration(m)) continue;
      const returns = typeName(m.type);
      if (!returns || !classes.has(returns)) continue; // comment(), commentAfter(): XMLElement
      const name = memberName(m);
      if (!methods.has(name)) methods.set(name, { returns, overloads: [] });
      methods.get(name).overloads.push(m);
    }
    for (const [name, { returns, overloads }] of methods) {
      let attrsIface = null;
      let text = null;
      for (const o of overloads) {
        for (const p of o.parameters) {
          const pname = p.name.getText();
          if (pname === "attributes") {
            const t = typeName(p.type);
            if (t && interfaces.has(t)) attrsIface = interfaces.get(t);
          } else {
            // The text argument; it is required if the overload with attributes requires it.
            const required = !p.questionToken;
            if (!text) text = { param: pname, required };
            else if (o.parameters.length > 1) text.required = required;
          }
        }
      }
      const declared = {};
      const args = {};
      if (attrsIface) {
        for (const m of attrsIface.members) {
          const key = memberName(m);
          declared[key] = valueType(m.type, aliases);
          const doc = ts.getJSDocCommentsAndTags(m).map((d) => d.comment || "").join(" ");
          declared[key].doc = String(doc).replace(/^\S+ - /, "");
          args[key] = marker(key);
        }
      }
      const child = text ? live[name](args, marker(text.param)) : live[name](args);
      const xml = child._getXml();
      const written = {};
      for (const [xmlName, attr] of Object.entries(xml.attribs || {})) {
        const key = String(attr.value).slice(1, -1);
        written[xmlName] = { ...declared[key], key };
      }
      const cid = channel + ":" + returns;
      elements[eid].children.push(cid);
      const made = { tag: xml.name, text, attributes: written, children: [], method: name };
      if (elements[cid]) {
        const before = JSON.stringify({ ...elements[cid], children: [] });
        if (before !== JSON.stringify(made)) throw new Error(`${cid} is built differently by two methods`);
      } else {
        elements[cid] = made;
      }
      todo.push([returns, child]);
    }
  }
  for (const e of Object.values(elements)) e.children = [...new Set(e.children)].sort();
  return { root: channel + ":" + rootName, elements };
}

// `--build`: reads a JSON list of documents on stdin, each {channel, steps: [{method, attrs, text}]}
// (a chain of builder calls from the root), and prints the list of XML strings twilio-node writes.
function build(docs) {
  return docs.map(({ channel, steps }) => {
    const Root = require(path.join(twilioDir, "lib", "twiml", ROOTS[channel] + ".js"));
    const root = new Root();
    let node = root;
    for (const { method, attrs, text } of steps) {
      node = text === null || text === undefined ? node[method](attrs) : node[method](attrs, text);
    }
    return root.toString();
  });
}

if (process.argv.includes("--build")) {
  const docs = JSON.parse(fs.readFileSync(0, "utf8"));
  process.stdout.write(JSON.stringify(build(docs)) + "\n");
} else {
  const out = { version: twilioVersion, channels: {} };
  for (const channel of Object.keys(ROOTS)) out.channels[channel] = describe(channel);
  process.stdout.write(JSON.stringify(out, null, 1) + "\n");
}
