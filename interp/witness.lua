-- witness.lua - what vouches for a transcript besides its own hash chain (which anyone who can
-- write the file can recompute): the SSH signature of its last checkpoint (PATH.sig) and the
-- checkpoints the session wrote to the system log. See interp/witness.h for when both are made,
-- and doc/transcripts.md for what they prove.
local core = require "core"

local M = {}

local NAMESPACE = "runbook-transcript"
local ARMOR = "-----BEGIN SSH SIGNATURE-----"
local TOOL_MS = 10000

-- heads[i]: the chain head after line i (texts: the file's whole lines, without newlines).
function M.heads(texts)
  local heads = {}
  for i, l in ipairs(texts) do heads[i] = i == 1 and core.sha256(l) or core.chain(heads[i - 1], l) end
  return heads
end

local function config_dir()
  local x = os.getenv("XDG_CONFIG_HOME")
  if not x or x:sub(1, 1) ~= "/" then x = (os.getenv("HOME") or "") .. "/.config" end
  return x .. "/runbook"
end

local function expand(p) return (p:gsub("^~/", (os.getenv("HOME") or "~") .. "/")) end

-- The key that signs: --sign-key, then $RUNBOOK_SIGN_KEY, then config.lua's signing.key; or nil.
function M.sign_key(opt, cfg)
  local k = opt or os.getenv("RUNBOOK_SIGN_KEY")
  if not k or k == "" then k = cfg and cfg.signing and cfg.signing.key end
  return k and k ~= "" and expand(k) or nil
end

-- The allowed-signers file: --allowed-signers, then config.lua's signing.allowed_signers, then
-- $XDG_CONFIG_HOME/runbook/allowed_signers.
function M.allowed_signers(opt, cfg)
  local a = opt or (cfg and cfg.signing and cfg.signing.allowed_signers)
  return a and expand(a) or (config_dir() .. "/allowed_signers")
end

local read_file = require("audit").read_file

local function first_line(s) return (tostring(s or ""):match("^%s*([^\n]*)")) end

-- Checks PATH.sig against the file's lines. Returns a table:
--   { status = "unsigned" }                       no PATH.sig
--   { status = "signed", signer, key, lines }     a good signature over the first `lines` lines
--   { status = "bad", why }                       a signature that does not vouch for this file
function M.signature(path, texts, allowed)
  local data = read_file(path .. ".sig")
  if not data then return { status = "unsigned" } end
  local at = data:find(ARMOR, 1, true)
  local statement, sig = at and data:sub(1, at - 1), at and data:sub(at)
  local id, n, head = (statement or ""):match("^runbook%-transcript checkpoint\nid (%x+)\nlines (%d+)\nhead (%x+)\n$")
  if not id then return { status = "bad", why = path .. ".sig is not a runbook checkpoint signature" } end
  n = math.tointeger(tonumber(n))
  local heads = M.heads(texts)
  if id ~= heads[1] then return { status = "bad", why = "the signature is of another session (line 1 differs)" } end
  if n > #texts then
    return { status = "bad", why = string.format("the signature covers %d lines, the file has %d: lines were removed", n, #texts) }
  end
  if heads[n] ~= head then
    return { status = "bad", why = string.format("the file's first %d lines are not the ones that were signed", n) }
  end
  local af = io.open(allowed, "rb")
  if af then af:close() else
    return { status = "bad", why = string.format("signed, but there is no allowed-signers file %s to check the key against " ..
                                                   "(create it, or pass --allowed-signers FILE)", allowed) }
  end
  local tmp = os.tmpname()
  local f = io.open(tmp, "wb")
  f:write(sig)
  f:close()
  local rc, out, err = core.tool({ "ssh-keygen", "-Y", "find-principals", "-s", tmp, "-f", allowed }, "", TOOL_MS)
  local who = rc == 0 and first_line(out) or nil
  local result
  if not rc then
    result = { status = "bad", why = "cannot check the signature: " .. out }
  elseif not who or who == "" then
    result = { status = "bad", why = string.format("signed by a key that is not in %s", allowed) }
  else
    local vrc, vout, verr = core.tool({ "ssh-keygen", "-Y", "verify", "-f", allowed, "-I", who, "-n", NAMESPACE, "-s", tmp },
                                      core.witness_statement(id, n, head), TOOL_MS)
    if vrc == 0 then
      result = { status = "signed", signer = who, lines = n, key = (vout .. verr):match("with (%S+ key %S+)") }
    else
      result = { status = "bad", why = "the signature does not verify: " .. first_line(verr ~= "" and verr or vout) }
    end
  end
  os.remove(tmp)
  return result
end

-- The checkpoints the system log holds: from FILE (a syslog file), or from `journalctl -t runbook`.
-- Returns a list of { id, line, head, why } or nil, err.
function M.log_entries(file)
  local text
  if file then
    text = read_file(file)
    if not text then return nil, "cannot read the log file " .. file end
  else
    local rc, out, err = core.tool({ "journalctl", "-t", "runbook", "-o", "cat", "--no-pager", "-q" }, "", TOOL_MS)
    if rc ~= 0 or out == "" then
      return nil, "cannot read the system journal (journalctl: " .. first_line(rc and (err ~= "" and err or "no entries") or out) ..
                  "); on a system without journald, pass the syslog file: --witness /var/log/syslog"
    end
    text = out
  end
  local entries = {}
  for line in text:gmatch("[^\n]+") do
    local id, n, head, why = line:match("transcript (%x+) line (%d+) head (%x+) %((%a+)%)")
    if id and (file == nil or line:find("runbook%[%d+%]: transcript ")) then
      entries[#entries + 1] = { id = id, line = math.tointeger(tonumber(n)), head = head, why = why }
    end
  end
  return entries
end

-- Compares the file with the log's checkpoints of its session. Returns ok, text.
function M.compare(texts, entries)
  local heads = M.heads(texts)
  local mine, last = {}, nil
  for _, e in ipairs(entries) do
    if e.id == heads[1] then mine[#mine + 1] = e end
  end
  if #mine == 0 then
    return false, "witness: the system log holds no checkpoint of this session (line 1 was changed, the log was " ..
                  "rotated away, or the session ran on another host)"
  end
  for _, e in ipairs(mine) do
    if e.line > #texts then
      return false, string.format("witness MISMATCH: the log saw line %d (%s), the file ends at line %d: lines were removed",
                                  e.line, e.why, #texts)
    end
    if heads[e.line] ~= e.head then
      return false, string.format("witness MISMATCH: at line %d (%s) the log saw chain head %s, the file has %s: " ..
                                  "the file was changed at or before line %d", e.line, e.why, e.head:sub(1, 16),
                                  heads[e.line]:sub(1, 16), e.line)
    end
    if not last or e.line > last.line then last = e end
  end
  local tail = #texts > last.line and string.format("; lines %d-%d come after the last checkpoint and are not witnessed",
                                                   last.line + 1, #texts) or ""
  return true, string.format("witness: %d checkpoint(s) in the system log match (last: line %d, %s)%s",
                             #mine, last.line, last.why, tail)
end

return M
