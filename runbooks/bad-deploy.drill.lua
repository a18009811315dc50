-- bad-deploy.drill.lua - how `runbook drill bad-deploy` rehearses this runbook: the lab's deploy is a
-- git checkout under its directory; release v2 is committed and the service fails from then on.
local function app_repo(lab) return lab.dir .. "/app" end

local function git(lab, env, ...)
  return lab.run { "git", "-C", app_repo(lab), "-c", "user.name=lab", "-c", "user.email=lab@localhost", env = env, ... }
end

local function release(lab, version, env)
  lab.write(app_repo(lab) .. "/VERSION", version .. "\n")
  git(lab, nil, "add", "VERSION")
  git(lab, env, "commit", "-q", "-m", "release " .. version)
end

local function version(lab)
  local v = lab.read(app_repo(lab) .. "/VERSION")
  return v and v:match("[^\n]*")
end

local function remove(lab) lab.sh("rm -rf " .. lab.shq(app_repo(lab))) end

return {
  modes = {
    errors = { what = "release v2 committed and deployed; the service fails from then on (nginx answers 502)", breaks = function(lab)
      remove(lab)
      lab.sh("mkdir -p " .. lab.shq(app_repo(lab)))
      git(lab, nil, "init", "-q")
      local hour_ago = os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() - 3600)
      release(lab, "v1", { GIT_AUTHOR_DATE = hour_ago, GIT_COMMITTER_DATE = hour_ago })
      lab.traffic("/health", 20)
      lab.sleep(1.1)   -- the access log and git count whole seconds: the deploy comes after these requests
      release(lab, "v2")
      lab.control("stop", "api")
      lab.traffic("/health", 20)
    end, expect = { findings = { "deploy.errors_rose" }, offers = { "rollback" } } },
  },
  -- Rolling back is reverting the release and starting the service.
  inputs = function(lab)
    local n = lab.state.nginx
    return { repo = app_repo(lab), access_log = n.access_log, since = "1m", url = n.url .. "/health",
             rollback = string.format([[sh -c "git -C %s -c user.name=lab -c user.email=lab@localhost revert --no-edit HEAD && %s"]],
                                      app_repo(lab), lab.lab_cmd("start", "api")),
             rollback_wait = "20s", timeout = "2s" }
  end,
  healthy = function(lab)
    if version(lab) ~= "v1" then return false, "the checkout is at " .. tostring(version(lab)) end
    return lab.proxied_healthy()
  end,
  repair = function(lab) lab.control("start", "api") remove(lab) end,
  cleanup = remove,
}
