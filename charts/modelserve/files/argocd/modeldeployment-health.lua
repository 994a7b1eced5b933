-- Argo CD health check for modelserve.io/ModelDeployment
-- (argocd-cm key: resource.customizations.health.modelserve.io_ModelDeployment).
-- Healthy: Ready=True and nothing in flight. Progressing: the operator has not yet seen
-- this generation (so a stale Ready never reads Healthy), or a rollout is moving.
-- Suspended: a canary paused (waits for `kubectl modelserve promote`). Degraded: the
-- operator reports a problem (failed analysis and rollback, unschedulable GPUs, bad spec).
local hs = {}
local function describe(c)
  if c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.reason or ""
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the modelserve operator to report status"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation ..
    " (status is for " .. tostring(observed) .. ")"
  return hs
end

local conditions = {}
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    -- A condition written for an older generation says nothing about this one.
    if c.observedGeneration == nil or generation == nil or c.observedGeneration >= generation then
      conditions[c.type] = c
    end
  end
end

local degraded = conditions["Degraded"]
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded)
  return hs
end

local progressing = conditions["Progressing"]
if progressing ~= nil and progressing.status == "True" then
  if progressing.reason == "Paused" then
    hs.status = "Suspended"
  else
    hs.status = "Progressing"
  end
  hs.message = describe(progressing)
  return hs
end

local ready = conditions["Ready"]
if ready ~= nil then
  if ready.status == "True" then
    hs.status = "Healthy"
  else
    hs.status = "Progressing"
  end
  hs.message = describe(ready)
  return hs
end

-- No conditions yet (an older operator): fall back on the phase.
local phase = obj.status.phase
if phase == "Ready" then
  hs.status = "Healthy"
elseif phase == "Degraded" then
  hs.status = "Degraded"
elseif phase == "Paused" then
  hs.status = "Suspended"
else
  hs.status = "Progressing"
end
hs.message = "phase " .. tostring(phase)
return hs
