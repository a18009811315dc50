-- auth-failures.drill.lua - how `runbook drill auth-failures` rehearses this runbook against the lab's
-- nginx and service: three replicas' copies of the signing secret (files under the lab's
-- directory), and users whose tokens the service refuses: 401s through nginx, in its access log.
local function auth_dir(lab) return lab.dir .. "/auth" end

-- The third replica's secret differs when differ is true.
local function replicas_and_refusals(differ)
  return function(lab)
    local d = auth_dir(lab)
    lab.sh("mkdir -p " .. lab.shq(d))
    for i = 1, 3 do
      lab.write(string.format("%s/replica%d.key", d, i), (differ and i == 3) and "signing-key-B\n" or "signing-key-A\n")
    end
    lab.traffic("/login", 60, { Authorization = "Bearer expired-or-forged" })
  end
end

-- The lab cannot move this machine's clock: the replica's clock is a stand-in command that prints
-- the time 5 minutes ahead, as `date +%s` on a drifted host would.
local SKEWED_CLOCK = [[sh -c "echo $(( $(date +%s) + 300 ))"]]

local function remove(lab) lab.sh("rm -rf " .. lab.shq(auth_dir(lab))) end

return {
  modes = {
    secret = { what = "one replica of three signs with another secret; 60 logins refused (401) through nginx",
               breaks = replicas_and_refusals(true), diagnosis = true,
               expect = { findings = { "auth.rejections", "auth.secret_mismatch" } } },
    skew = { what = "a replica's clock 5 minutes ahead (a stand-in date); 60 logins refused (401) through nginx",
             breaks = replicas_and_refusals(false), diagnosis = true,
             expect = { findings = { "auth.rejections", "auth.clock_skew" }, never = {} } },
  },
  inputs = function(lab, mode)
    local d = auth_dir(lab)
    return { access_log = lab.state.nginx.access_log, since = "1h", recent = "10m", min_rate = 5, timeout = "2s",
             secret_files = string.format("%s/replica1.key,%s/replica2.key,%s/replica3.key", d, d, d),
             clock = mode == "skew" and SKEWED_CLOCK or nil }
  end,
  healthy = function(lab) return lab.proxied_healthy() end,
  repair = remove,
  cleanup = remove,
}
