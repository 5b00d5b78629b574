"""Rendering of outreach e-mails from Jinja templates, and the substitution skeletons that let one
SendGrid request carry up to 1000 different personalised messages.

Templates live in ``templates/``: ``<name>.subject``, ``<name>.txt`` and ``<name>.html`` (the
variables each one needs are listed in the header comment of its ``.html`` file). They run in a
:class:`~jinja2.sandbox.SandboxedEnvironment` with :class:`~jinja2.StrictUndefined` (a missing
variable is an error, never an empty string) and HTML autoescaping for ``.html``. Any template
error (syntax, undefined variable, sandbox violation such as ``{{ ''.__class__.__mro__ }}``) is a
:class:`RenderError` naming the template.

Batching (why substitutions): SendGrid has no stored templates here, so each message is rendered
by us. Rendering per message and sending one request per message costs 100k requests for 100k
messages. Instead each template is also rendered once per *shape* (the set of context variables and
the value of the ones that steer control flow: booleans, None, lists, dicts) with every scalar
variable replaced by a substitution tag (``%%name%%`` in subject/text, ``%%name:h%%`` in HTML). The
messages of one shape share that skeleton and carry their values in ``personalizations[].
substitutions``, which SendGrid fills in the subject and content. The substituted skeleton is
*verified* against the real rendering of the message's values; when a template does something a tag
cannot express (a comparison on a value, a filter other than ``money``/``number``) the message falls
back to its fully rendered content, grouped with identical messages. Correctness never depends on
the skeleton; only the request count does.

Speed: a rendering depends only on the variables the template's parts read (found statically with
``jinja2.meta``; the environment has no globals), so renders and verifications are shared between
messages with equal values of those variables. The per-message unsubscribe URL is itself printed as
a tag and substituted, when the templates provably (AST check) only print it with
``{{ unsubscribe_url }}``.

    retention outreach preview TEMPLATE [--context JSON] [--category marketing|transactional]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import jinja2.meta
from jinja2.sandbox import SandboxedEnvironment

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
PARTS = ("subject", "txt", "html")

#: templates of every campaign step the planner uses (each has .subject, .txt and .html)
TEMPLATE_NAMES = (
    "renewal_t_minus_7",
    "renewal_t_minus_1_offer",
    "renewal_t0_perk",
    "renewal_t_plus_7_winback",
    "save_discount",
    "save_help",
    "save_apology",
    "dunning_update_card",
    "winback_quick_offer",
    "winback_nurture",
    "proactive_apology",
    "team_digest",
)

#: names campaigns.yml uses for the same steps (thin templates that include the ones above)
TEMPLATE_ALIASES = {
    "renewal_reminder": "renewal_t_minus_7",
    "renewal_offer": "renewal_t_minus_1_offer",
    "renewal_perk": "renewal_t0_perk",
    "renewal_winback": "renewal_t_plus_7_winback",
    "save_help_content": "save_help",
    "save_apology_fix": "save_apology",
    "service_apology_fix": "proactive_apology",
}
#: templates of their own that campaigns.yml uses beyond the list above
EXTRA_TEMPLATES = ("save_check_in",)

#: SendGrid limit on the substitutions of one personalization (bytes)
MAX_SUBSTITUTION_BYTES = 10_000


class RenderError(ValueError):
    """A template could not be rendered; the message names the template (and the message key)."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class Skeleton:
    """A template rendered with substitution tags instead of scalar values."""

    subject: str
    text: str
    html: str
    tags: tuple[str, ...]  # the substitution tags that occur in the skeleton
    parsed: tuple[tuple[str, str, tuple[str, ...], bool], ...] = ()  # (tag, variable, filters, html)


@dataclass
class Prepared:
    """One message ready for a request: either a shared skeleton plus substitutions, or its own
    fully rendered content (``substitutions`` empty, ``content`` is the rendering)."""

    group: tuple[str, str, str]  # (subject, text, html) shared by every message of the request
    substitutions: dict[str, str] = field(default_factory=dict)


def _tag(name: str, html: bool, filters: tuple[str, ...] = ()) -> str:
    chain = "".join(f"|{f}" for f in filters)
    return f"%%{name}{chain}:h%%" if html else f"%%{name}{chain}%%"


class Tag(str):
    """A substitution tag standing for a context variable while a skeleton is rendered. The
    project's formatting filters keep it a tag (recording the filter) instead of failing on it."""

    name: str
    html: bool
    filters: tuple[str, ...]

    def __new__(cls, name: str, html: bool, filters: tuple[str, ...] = ()) -> Tag:
        obj = super().__new__(cls, _tag(name, html, filters))
        obj.name, obj.html, obj.filters = name, html, filters
        return obj


def _money(value: Any) -> str:
    """Two decimals (``29`` → ``29.00``)."""
    if isinstance(value, Tag):
        return Tag(value.name, value.html, (*value.filters, "money"))
    return f"{float(value):.2f}"


def _number(value: Any) -> str:
    """A number without a needless ``.0`` (``15.0`` → ``15``, ``12.5`` → ``12.5``)."""
    if isinstance(value, Tag):
        return Tag(value.name, value.html, (*value.filters, "number"))
    f = float(value)
    return str(int(f)) if f.is_integer() else f"{f:g}"


FILTERS = {"money": _money, "number": _number}


@lru_cache(maxsize=4)
def environment(templates_dir: Path = TEMPLATES_DIR) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        auto_reload=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    # no globals (range, lipsum, cycler, joiner, namespace): templates only format the context, and
    # every render copies the globals into a fresh context (measurably slower at 100k messages)
    env.globals.clear()
    return env


def template_files(name: str, templates_dir: Path = TEMPLATES_DIR) -> dict[str, str]:
    return {part: f"{name}.{part}" for part in PARTS}


def template_variables(name: str, templates_dir: Path = TEMPLATES_DIR) -> set[str]:
    """Variables a template reads (all three parts and what they include/extend), for the planner."""
    asts, _ = _parsed_files(name, templates_dir)
    out: set[str] = set()
    for ast in asts:
        out |= jinja2.meta.find_undeclared_variables(ast)
    return out - set(AUTO_VARIABLES)


def _parsed_files(name: str, templates_dir: Path) -> tuple[list[jinja2.nodes.Template], bool]:
    """Every file of a template (three parts and what they include/extend), parsed once each, and
    whether any include's name is computed at render time (those cannot be followed)."""
    env = environment(templates_dir)
    seen: set[str] = set()
    asts: list[jinja2.nodes.Template] = []
    dynamic = False
    todo = list(template_files(name).values())
    while todo:
        file = todo.pop()
        if file in seen:
            continue
        seen.add(file)
        try:
            ast = env.parse(env.loader.get_source(env, file)[0])  # type: ignore[union-attr]
        except jinja2.TemplateError as exc:
            raise RenderError(f"template {name!r} ({file}): {exc}") from None
        asts.append(ast)
        for ref in jinja2.meta.find_referenced_templates(ast):
            if ref is None:
                dynamic = True
            else:
                todo.append(ref)
    return asts, dynamic


#: variables every template gets from delivery (not from PlannedMessage.context); ``offer_code``
#: also comes from delivery (PlannedMessage.offer_code) but only for steps with an offer
AUTO_VARIABLES = ("sender_name", "unsubscribe_url", "category", "account_url")


def unsubscribe_link(base: str, outbox_key: str) -> str:
    return f"{base.rstrip('/')}/{quote(outbox_key, safe='')}"


def full_context(
    context: dict[str, Any],
    *,
    outbox_key: str,
    category: str,
    offer_code: str | None,
    sender_name: str,
    unsubscribe_base: str,
    account_url: str = "",
    unsubscribe_url: str | None = None,
) -> dict[str, Any]:
    """The planner's context plus what delivery adds (the planner's values win)."""
    auto: dict[str, Any] = {"sender_name": sender_name, "category": category, "account_url": account_url}
    if category == "marketing":
        auto["unsubscribe_url"] = unsubscribe_url or unsubscribe_link(unsubscribe_base, outbox_key)
    if offer_code:
        auto["offer_code"] = offer_code
    return {**auto, **context}


@lru_cache(maxsize=256)
def _load(name: str, templates_dir: Path) -> dict[str, jinja2.Template]:
    env = environment(templates_dir)
    out = {}
    for part, file in template_files(name).items():
        try:
            out[part] = env.get_template(file)
        except jinja2.TemplateNotFound as exc:
            raise RenderError(
                f"template {name!r}: file {exc.name!r} not found in {templates_dir} "
                f"(every template needs {', '.join(template_files(name).values())})"
            ) from None
        except jinja2.TemplateError as exc:
            raise RenderError(f"template {name!r} ({file}): {type(exc).__name__}: {exc}") from None
    return out


def render(
    name: str,
    context: dict[str, Any],
    *,
    templates_dir: Path = TEMPLATES_DIR,
    key: str = "",
    html_context: dict[str, Any] | None = None,
) -> Rendered:
    """Render subject, text and HTML of one message (the HTML part with ``html_context`` when
    given). Raises :class:`RenderError`."""
    templates = _load(name, templates_dir)
    parts: dict[str, str] = {}
    for part, template in templates.items():
        try:
            parts[part] = template.render(html_context if part == "html" and html_context else context)
        except Exception as exc:  # undefined, sandbox SecurityError, TypeError inside a filter, ...
            where = f" for message {key}" if key else ""
            raise RenderError(
                f"template {name!r} ({template.name}){where}: {type(exc).__name__}: {exc}"
            ) from None
    subject = " ".join(parts["subject"].split())
    if not subject:
        raise RenderError(f"template {name!r} rendered an empty subject")
    if not parts["txt"].strip() or not parts["html"].strip():
        raise RenderError(f"template {name!r} rendered an empty text or HTML body")
    return Rendered(subject=subject, text=parts["txt"], html=parts["html"])


#: variables that steer control flow or are the same for every message: never turned into tags
CONTROL_VARIABLES = frozenset({"category", "sender_name", "account_url"})


_TAG_TYPES = (str, int, float)  # exact types: bool (an int) steers control flow, never a tag
_PLAIN = (str, int, float, bool, type(None))


def _is_tag_value(value: Any, key: str = "") -> bool:
    return type(value) in _TAG_TYPES and key not in CONTROL_VARIABLES


def shape_of(name: str, context: dict[str, Any]) -> tuple[Any, ...]:
    """Messages of the same shape share one skeleton: same variables, same control-flow values."""
    items: list[Any] = [name]
    for k in sorted(context):
        v = context[k]
        if type(v) in _TAG_TYPES and k not in CONTROL_VARIABLES:
            items.append((k, "$"))
        elif type(v) in _PLAIN:
            items.append((k, type(v).__name__, v))
        else:
            items.append((k, _frozen(v)))
    return tuple(items)


class SkeletonCache:
    """Skeletons per shape (None when the template cannot be rendered with tags)."""

    def __init__(self, templates_dir: Path = TEMPLATES_DIR) -> None:
        self.templates_dir = templates_dir
        self._cache: dict[tuple[Any, ...], Skeleton | None] = {}
        self._refs: dict[str, tuple[frozenset[str], bool] | None] = {}
        self._renders: dict[tuple[Any, ...], _CachedRender] = {}
        self._checks: dict[tuple[Any, ...], bool] = {}

    def references(self, name: str) -> tuple[frozenset[str], bool] | None:
        """Every variable the template's three parts (and what they include) read, and whether the
        unsubscribe URL is only printed; None when that cannot be known statically (a dynamic
        include)."""
        if name not in self._refs:
            self._refs[name] = _references(name, self.templates_dir)
        return self._refs[name]

    def get(
        self, name: str, context: dict[str, Any], shape: tuple[Any, ...] | None = None
    ) -> Skeleton | None:
        shape = shape or shape_of(name, context)
        if shape not in self._cache:
            self._cache[shape] = self._build(name, context)
        return self._cache[shape]

    def _build(self, name: str, context: dict[str, Any]) -> Skeleton | None:
        if any(_is_tag_value(v, k) and "%%" in str(v) for k, v in context.items()):
            return None
        plain = {k: (Tag(k, False) if _is_tag_value(v, k) else v) for k, v in context.items()}
        html = {k: (Tag(k, True) if _is_tag_value(v, k) else v) for k, v in context.items()}
        try:
            templates = _load(name, self.templates_dir)
            subject = " ".join(templates["subject"].render(plain).split())
            text = templates["txt"].render(plain)
            body = templates["html"].render(html)
        except Exception:  # the real rendering reports template errors; this only falls back
            return None
        tags = tuple(sorted(set(_TAG_RE.findall(subject + text + body))))
        parsed = []
        for tag in tags:
            inner = tag[2:-2]
            name_, *filters = inner.removesuffix(":h").split("|")
            if name_ not in context or any(f not in FILTERS for f in filters):
                return None  # a tag changed by something else than our filters: no skeleton
            parsed.append((tag, name_, tuple(filters), inner.endswith(":h")))
        return Skeleton(subject=subject, text=text, html=body, tags=tags, parsed=tuple(parsed))


_TAG_RE = re.compile(r"%%[A-Za-z_][A-Za-z0-9_]*(?:\|[a-z]+)*(?::h)?%%")


def substitutions_for(skeleton: Skeleton, context: dict[str, Any]) -> dict[str, str]:
    """The value of every tag of the skeleton for one message (filters applied, HTML escaped)."""
    subs: dict[str, str] = {}
    for tag, name, filters, html in skeleton.parsed:
        value: Any = context[name]
        for f in filters:
            value = FILTERS[f](value)
        text = str(value)
        subs[tag] = _escape(text) if html else text
    return subs


_ESCAPES = (("&", "&amp;"), (">", "&gt;"), ("<", "&lt;"), ("'", "&#39;"), ('"', "&#34;"))


def _escape(text: str) -> str:
    """markupsafe.escape of a plain str (same output, without the Markup round trip)."""
    for a, b in _ESCAPES:
        if a in text:
            text = text.replace(a, b)
    return text


def apply_substitutions(text: str, subs: dict[str, str]) -> str:
    for tag, value in subs.items():
        text = text.replace(tag, value)
    return text


def _url_only_printed(ast: jinja2.nodes.Template) -> bool:
    """Is every use of the unsubscribe URL a bare ``{{ unsubscribe_url }}`` (no filter, test,
    comparison, attribute)? Then printing a tag and substituting the link later is exact."""
    printed = {
        id(child)
        for output in ast.find_all(jinja2.nodes.Output)
        for child in output.nodes
        if isinstance(child, jinja2.nodes.Name) and child.name == URL_VARIABLE
    }
    return all(id(n) in printed for n in ast.find_all(jinja2.nodes.Name) if n.name == URL_VARIABLE)


def _references(name: str, templates_dir: Path) -> tuple[frozenset[str], bool] | None:
    """(variables read, unsubscribe URL only printed) over the three parts and what they include."""
    try:
        asts, dynamic = _parsed_files(name, templates_dir)
    except (RenderError, OSError):
        return None  # the real rendering reports it
    if dynamic:
        return None
    out: set[str] = set()
    for ast in asts:
        out |= jinja2.meta.find_undeclared_variables(ast)
    return frozenset(out), all(_url_only_printed(ast) for ast in asts)


@dataclass
class _CachedRender:
    rendered: Rendered  # with the unsubscribe URL as a tag when ``url_tagged``
    url_tagged: bool
    url_in_plain: bool = False
    url_in_html: bool = False

    def __post_init__(self) -> None:
        self.url_in_plain = _tag(URL_VARIABLE, False) in self.rendered.subject + self.rendered.text
        self.url_in_html = _tag(URL_VARIABLE, True) in self.rendered.html

    def url_subs(self, url: str) -> dict[str, str]:
        subs = {}
        if self.url_in_plain:
            subs[_tag(URL_VARIABLE, False)] = url
        if self.url_in_html:
            subs[_tag(URL_VARIABLE, True)] = _escape(url)
        return subs


_MISSING = ("<missing>",)


def _frozen(value: Any) -> tuple[str, Any]:
    if type(value) is float:
        return ("float", repr(value))  # 0.0 and -0.0 are equal keys but print differently
    if type(value) in _PLAIN:
        return (type(value).__name__, value)
    return (type(value).__name__, json.dumps(value, sort_keys=True, default=repr))


def _apply(rendered: Rendered, subs: dict[str, str]) -> Rendered:
    if not subs:
        return rendered
    return Rendered(*(apply_substitutions(p, subs) for p in (rendered.subject, rendered.text, rendered.html)))


#: the per-message unsubscribe link: always carried as a substitution, so renders can be shared
URL_VARIABLE = "unsubscribe_url"


def prepare(
    name: str,
    context: dict[str, Any],
    cache: SkeletonCache,
    *,
    key: str = "",
) -> Prepared:
    """Render one message (errors raise :class:`RenderError`) and express it as a shared skeleton
    plus substitutions when that provably reproduces the rendering.

    Renders are shared between messages whose referenced variables are equal (a template's output
    depends on nothing else: no globals, deterministic filters); the per-message unsubscribe URL is
    rendered as a tag and substituted when the templates provably only print it (AST check)."""
    info = cache.references(name)
    url = context.get(URL_VARIABLE)
    if info is None:
        rendered = render(name, context, templates_dir=cache.templates_dir, key=key)
        return _prepare_rendered(name, context, cache, rendered, {}, None)
    refs, url_printed = info
    url_tagged = url_printed and URL_VARIABLE in refs and isinstance(url, str) and "%%" not in url
    rkey = (
        name,
        url_tagged,
        *((k, _frozen(context[k]) if k in context else _MISSING) for k in sorted(refs - {URL_VARIABLE})),
        (URL_VARIABLE, None if url_tagged else _frozen(url) if URL_VARIABLE in context else _MISSING),
    )
    cached = cache._renders.get(rkey)
    if cached is None:
        if url_tagged:  # the link is only printed: print its tag, substitute it per message
            plain = {**context, URL_VARIABLE: Tag(URL_VARIABLE, False)}
            html = {**context, URL_VARIABLE: Tag(URL_VARIABLE, True)}
            tagged = render(name, plain, templates_dir=cache.templates_dir, key=key, html_context=html)
            cached = _CachedRender(tagged, True)
        else:
            cached = _CachedRender(render(name, context, templates_dir=cache.templates_dir, key=key), False)
        cache._renders[rkey] = cached
    url_subs = cached.url_subs(url) if cached.url_tagged else {}  # type: ignore[arg-type]
    return _prepare_rendered(name, context, cache, cached.rendered, url_subs, rkey)


def _prepare_rendered(
    name: str,
    context: dict[str, Any],
    cache: SkeletonCache,
    rendered: Rendered,
    url_subs: dict[str, str],
    rkey: tuple[Any, ...] | None,
) -> Prepared:
    """``rendered`` (with ``url_subs`` applied) is the message; share a skeleton if it reproduces it."""
    shape = shape_of(name, context)
    skeleton = cache.get(name, context, shape)
    if skeleton is not None:
        subs = substitutions_for(skeleton, context)
        other = {k: v for k, v in subs.items() if k not in url_subs}
        check_key = (rkey, shape) if rkey is not None else None
        ok = cache._checks.get(check_key) if check_key is not None else None
        if ok is None:
            ok = _apply(Rendered(skeleton.subject, skeleton.text, skeleton.html), other) == rendered
            if check_key is not None:
                cache._checks[check_key] = ok
        size = sum(len(k.encode()) + len(v.encode()) for k, v in subs.items())
        if ok and size <= MAX_SUBSTITUTION_BYTES and set(url_subs) <= set(subs):
            return Prepared(group=(skeleton.subject, skeleton.text, skeleton.html), substitutions=subs)
    if url_subs:  # share the render, substitute only the link
        return Prepared(group=(rendered.subject, rendered.text, rendered.html), substitutions=url_subs)
    return Prepared(group=(rendered.subject, rendered.text, rendered.html))


# --- preview command ---------------------------------------------------------------------------


def preview_main(argv: list[str]) -> int:
    """``retention outreach preview TEMPLATE [--context JSON]``: print subject, text and HTML."""
    from retention.settings import get_settings

    parser = argparse.ArgumentParser(prog="retention outreach preview", description=preview_main.__doc__)
    parser.add_argument("template", help="template name, one of: " + ", ".join(TEMPLATE_NAMES))
    parser.add_argument("--context", default="{}", help="template variables as a JSON object (or @file.json)")
    parser.add_argument("--category", choices=("marketing", "transactional"), default="marketing")
    parser.add_argument("--offer-code", default="EXAMPLE-CODE", help="offer code (PlannedMessage.offer_code)")
    parser.add_argument("--variables", action="store_true", help="only list the variables it reads")
    args = parser.parse_args(argv)
    try:
        if args.variables:
            for var in sorted(template_variables(args.template)):
                print(var)
            return 0
        raw = args.context
        if raw.startswith("@"):
            raw = Path(raw[1:]).read_text()
        try:
            context = json.loads(raw)
        except json.JSONDecodeError as exc:
            print(f"error: --context is not valid JSON: {exc}", file=sys.stderr)
            return 2
        if not isinstance(context, dict):
            print("error: --context must be a JSON object", file=sys.stderr)
            return 2
        s = get_settings()
        ctx = full_context(
            context,
            outbox_key="preview:preview:0000000000000000",
            category=args.category,
            offer_code=context.get("offer_code") or args.offer_code,
            sender_name=s.sender_name,
            unsubscribe_base=s.unsubscribe_url,
            account_url=s.account_url,
        )
        out = render(args.template, ctx)
    except (RenderError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Subject: {out.subject}\n\n--- text/plain ---\n{out.text}\n--- text/html ---\n{out.html}")
    return 0
