-- Argo CD health check for modelserve.io/ModelVersion
-- (argocd-cm key: resource.customizations.health.modelserve.io_ModelVersion).
-- A ModelVersion is an immutable snapshot: Healthy once the operator found it servable,
-- Degraded when it is not (the message names the field), Progressing until checked.
local hs = {}
if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the modelserve operator to check this version"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to check generation " .. generation
  return hs
end

if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then
      if c.status == "True" then
        hs.status = "Healthy"
      elseif c.status == "False" then
        hs.status = "Degraded"
      else
        hs.status = "Progressing"
      end
      hs.message = (c.reason or "") .. ": " .. (c.message or "")
      return hs
    end
  end
end

if obj.status.phase == "Valid" then
  hs.status = "Healthy"
elseif obj.status.phase == "Invalid" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = "phase " .. tostring(obj.status.phase)
return hs
