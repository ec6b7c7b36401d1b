{{/* Name of the chart, or nameOverride. */}}
{{- define "ao.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object name: RELEASE-NAME, or RELEASE when it already contains NAME, or fullnameOverride.
Short enough that the longest suffix (-operator-leader) keeps names within 63 characters. */}}
{{- define "ao.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "ao.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ao.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "ao.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: agent-orchestrator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: include with (dict "ctx" $ "component" "operator"). */}}
{{- define "ao.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ao.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "ao.componentLabels" -}}
{{ include "ao.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "ao.operator.fullname" -}}{{ include "ao.fullname" . }}-operator{{- end -}}
{{- define "ao.gateway.fullname" -}}{{ include "ao.fullname" . }}-gateway{{- end -}}

{{- define "ao.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "ao.operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ao.gateway.serviceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create -}}
{{- default (include "ao.gateway.fullname" .) .Values.gateway.serviceAccount.name -}}
{{- else -}}
{{- required "gateway.serviceAccount.name is required when gateway.serviceAccount.create is false" .Values.gateway.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ao.agent.serviceAccountName" -}}
{{- default (printf "%s-agent" (include "ao.fullname" .)) .Values.agent.serviceAccount.name -}}
{{- end -}}

{{- define "ao.leaseName" -}}
{{- default (printf "%s-operator-leader" (include "ao.fullname" .)) .Values.operator.leaderElection.leaseName -}}
{{- end -}}

{{/* image reference: include with (dict "ctx" $ "image" .Values.operator.image) */}}
{{- define "ao.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The gateway Service's in-cluster names, without and with the port. */}}
{{- define "ao.gateway.hosts" -}}
{{- $svc := include "ao.gateway.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.gateway.clusterDomain) -}}
{{- $hosts := list -}}
{{- range $names -}}
{{- $hosts = append $hosts . -}}
{{- $hosts = append $hosts (printf "%s:%d" . (int $.Values.gateway.port)) -}}
{{- end -}}
{{- if and .Values.dashboard.enabled .Values.dashboard.ingress.enabled .Values.dashboard.ingress.host -}}
{{- $hosts = append $hosts .Values.dashboard.ingress.host -}}
{{- end -}}
{{- concat $hosts .Values.gateway.extraAllowedHosts | join "," -}}
{{- end -}}

{{- define "ao.mcpUrl" -}}
{{- default (printf "http://%s.%s.svc.%s:%d/mcp" (include "ao.gateway.fullname" .) .Release.Namespace .Values.gateway.clusterDomain (int .Values.gateway.port)) .Values.operator.mcpUrl -}}
{{- end -}}

{{/* Default affinity: prefer one replica per node. include with (dict "ctx" $ "component" "operator") */}}
{{- define "ao.spreadAffinity" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "ao.selectorLabels" . | nindent 12 }}
{{- end -}}

{{/*
The namespace defaults of the tree limits, the same flags for the operator and the gateway (values: governance).
*/}}
{{- define "ao.governanceArgs" -}}
{{- $g := .Values.governance -}}
{{- if not (kindIs "invalid" $g.defaultMaxDepth) }}
- {{ printf "--default-max-depth=%d" (int $g.defaultMaxDepth) | quote }}
{{- end }}
{{- if not (kindIs "invalid" $g.defaultMaxChildren) }}
- {{ printf "--default-max-children=%d" (int $g.defaultMaxChildren) | quote }}
{{- end }}
{{- if not (kindIs "invalid" $g.defaultMaxActiveChildren) }}
- {{ printf "--default-max-active-children=%d" (int $g.defaultMaxActiveChildren) | quote }}
{{- end }}
{{- end }}
{{/* The OTEL_* environment of a component ($ = root context, .service = its service name); empty when tracing is off. */}}
{{- define "ao.tracingEnv" -}}
{{- with .root.Values.tracing.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ $.service | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $.root.Values.tracing.sampler | quote }}
{{- with $.root.Values.tracing.samplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end -}}
