{{/* Name of the DaemonSet, ServiceAccount and the pods' `app` label. */}}
{{- define "skein.name" -}}
{{- if .Values.compatName -}}ztunnel{{- else -}}{{ .Values.resourceName }}{{- end -}}
{{- end }}

{{- define "skein.image" -}}
{{- $repo := required "image.repository is required: the registry path of a Skein image (built from charts/skein/image/Dockerfile)" .Values.image.repository -}}
{{ $repo }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* istiod's xDS/CA endpoint, as ztunnel's chart derives it. */}}
{{- define "skein.istiod" -}}
istiod{{ if .Values.revision }}-{{ .Values.revision }}{{ end }}.{{ .Values.istioNamespace }}.svc:15012
{{- end }}

{{- define "skein.labels" -}}
app.kubernetes.io/name: skein
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: istio
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}
