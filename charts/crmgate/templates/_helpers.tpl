{{/*
Name of the chart, or nameOverride.
*/}}
{{- define "crmgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the objects: fullnameOverride, else the release name (with the
chart name appended unless it already contains it), at most 63 characters.
*/}}
{{- define "crmgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "crmgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "crmgate.labels" -}}
helm.sh/chart: {{ include "crmgate.chart" . }}
{{ include "crmgate.selectorLabels" . }}
app.kubernetes.io/version: {{ include "crmgate.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels that select the pods.
*/}}
{{- define "crmgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "crmgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of the helm test pod: not the selector labels, so that neither the
Deployment, the Service nor the PodDisruptionBudget picks the pod up.
*/}}
{{- define "crmgate.testLabels" -}}
app.kubernetes.io/name: {{ include "crmgate.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: helm-test
{{- end }}

{{- define "crmgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "crmgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "crmgate.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/*
The image reference: by digest when one is given.
*/}}
{{- define "crmgate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository (include "crmgate.imageTag" .) .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "crmgate.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
The Service with the metrics port: the gateway's own when it is ClusterIP,
else a ClusterIP Service of its own, so that /metrics is never exposed
outside the cluster with the gateway.
*/}}
{{- define "crmgate.metricsService" -}}
{{- if eq .Values.service.type "ClusterIP" }}
{{- include "crmgate.fullname" . }}
{{- else }}
{{- printf "%s-metrics" (include "crmgate.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}
{{- end }}

{{- define "crmgate.secretName" -}}
{{- default (include "crmgate.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{- define "crmgate.policyConfigMap" -}}
{{- default (include "crmgate.fullname" .) .Values.policy.existingConfigMap }}
{{- end }}

{{- define "crmgate.hasPolicy" -}}
{{- if or .Values.policy.content .Values.policy.existingConfigMap }}true{{ end }}
{{- end }}

{{/*
Replicas the pods run with at least: replicaCount, or the HPA's minimum.
*/}}
{{- define "crmgate.minReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ .Values.autoscaling.minReplicas }}{{ else }}{{ .Values.replicaCount }}{{ end }}
{{- end }}

{{/*
The path the Ingress and HTTPRoute send to crmgate: everything, or only the
gateway's own prefix in forward-auth mode (the ingress proxies the site).
*/}}
{{- define "crmgate.routedPath" -}}
{{- if .Values.forwardAuth.enabled }}{{ .Values.config.authPrefix }}{{ else }}/{{ end }}
{{- end }}

{{/*
Rules the schema cannot express (comparisons between values). The schema
holds every other rule; this only fails rendering with a clear message.
*/}}
{{- define "crmgate.validate" -}}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) }}
{{- fail (printf "autoscaling.maxReplicas (%v) must be at least autoscaling.minReplicas (%v)" .Values.autoscaling.maxReplicas .Values.autoscaling.minReplicas) }}
{{- end }}
{{- end }}

{{/*
Environment of the crmgate container and of the check-config init
container: the same settings, so that check-config checks what serve runs.
*/}}
{{- define "crmgate.env" -}}
- name: CRMGATE_PUBLIC_URL
  value: {{ .Values.config.publicURL | quote }}
- name: CRMGATE_LISTEN
  value: ":8080"
- name: CRMGATE_OPS_LISTEN
  value: ":9090"
- name: CRMGATE_AUTH_PREFIX
  value: {{ .Values.config.authPrefix | quote }}
{{- if .Values.config.upstreamURL }}
- name: CRMGATE_UPSTREAM_URL
  value: {{ .Values.config.upstreamURL | quote }}
{{- end }}
{{- if include "crmgate.hasPolicy" . }}
- name: CRMGATE_POLICY_FILE
  value: /etc/crmgate/policy.yaml
{{- end }}
{{- if .Values.config.trustedProxies }}
- name: CRMGATE_TRUSTED_PROXIES
  value: {{ join "," .Values.config.trustedProxies | quote }}
{{- end }}
- name: CRMGATE_SHUTDOWN_DELAY
  value: {{ printf "%ds" (int .Values.config.shutdownDelaySeconds) | quote }}
- name: CRMGATE_SHUTDOWN_TIMEOUT
  value: {{ printf "%ds" (int .Values.config.shutdownTimeoutSeconds) | quote }}
{{- if eq .Values.database.type "postgres" }}
# Overrides the image's CRMGATE_DATABASE_URL (sqlite:/data/crmgate.db): a
# container cannot unset it, and crmgate takes an empty value as unset.
- name: CRMGATE_DATABASE_URL
  value: ""
- name: CRMGATE_DATABASE_URL_FILE
  value: /run/secrets/crmgate/{{ .Values.secretKeys.databaseURL }}
{{- else }}
- name: CRMGATE_DATABASE_URL
  value: sqlite:/data/crmgate.db
{{- end }}
- name: CRMGATE_COOKIE_KEYS_FILE
  value: /run/secrets/crmgate/{{ .Values.secretKeys.cookieKeys }}
- name: CRMGATE_SIGNING_KEYS_FILE
  value: /run/secrets/crmgate/{{ .Values.secretKeys.signingKeys }}
{{- with .Values.dataverse }}
{{- if .url }}
- name: CRMGATE_DATAVERSE_URL
  value: {{ .url | quote }}
- name: CRMGATE_DATAVERSE_TENANT_ID
  value: {{ .tenantID | quote }}
- name: CRMGATE_DATAVERSE_CLIENT_ID
  value: {{ .clientID | quote }}
{{- if eq .auth "clientSecret" }}
- name: CRMGATE_DATAVERSE_CLIENT_SECRET_FILE
  value: /run/secrets/crmgate/{{ $.Values.secretKeys.dataverseClientSecret }}
{{- else if eq .auth "certificate" }}
- name: CRMGATE_DATAVERSE_CERTIFICATE_FILE
  value: /run/secrets/crmgate/{{ $.Values.secretKeys.dataverseCertificate }}
{{- else }}
- name: CRMGATE_DATAVERSE_FEDERATED_TOKEN_FILE
  value: /var/run/secrets/crmgate/dataverse/token
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.dataverse.url .Values.dataverse.webhook }}
- name: CRMGATE_HOOKS_DATAVERSE_SECRET_FILE
  value: /run/secrets/crmgate/{{ .Values.secretKeys.dataverseWebhookSecret }}
{{- end }}
{{- if .Values.smtp.enabled }}
- name: CRMGATE_SMTP_URL_FILE
  value: /run/secrets/crmgate/{{ .Values.secretKeys.smtpURL }}
- name: CRMGATE_SMTP_FROM
  value: {{ .Values.smtp.from | quote }}
{{- end }}
{{- range $name, $value := .Values.config.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}

{{/*
Volume mounts of both containers.
*/}}
{{- define "crmgate.volumeMounts" -}}
- name: data
  mountPath: /data
- name: tmp
  mountPath: /tmp
- name: secrets
  mountPath: /run/secrets/crmgate
  readOnly: true
{{- if include "crmgate.hasPolicy" . }}
- name: policy
  mountPath: /etc/crmgate
  readOnly: true
{{- end }}
{{- if and .Values.dataverse.url (eq .Values.dataverse.auth "federatedToken") }}
- name: dataverse-token
  mountPath: /var/run/secrets/crmgate/dataverse
  readOnly: true
{{- end }}
{{- end }}

{{/*
Security context of every container: what Pod Security "restricted" asks.
*/}}
{{- define "crmgate.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Security context of every pod.
*/}}
{{- define "crmgate.podSecurityContext" -}}
runAsNonRoot: true
{{- with .Values.securityContext }}
{{- if not (kindIs "invalid" .runAsUser) }}
runAsUser: {{ .runAsUser }}
{{- end }}
{{- if not (kindIs "invalid" .runAsGroup) }}
runAsGroup: {{ .runAsGroup }}
{{- end }}
{{- if not (kindIs "invalid" .fsGroup) }}
fsGroup: {{ .fsGroup }}
fsGroupChangePolicy: OnRootMismatch
{{- end }}
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end }}
