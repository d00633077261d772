// SPDX-License-Identifier: Apache-2.0
export { DEFAULT_WAYPOINT_NAME, parseWaypointArgs, waypointUsage, WaypointUsageError, type ApplyOptions, type WaypointCommand } from './args.ts';
export { connectCluster, WaypointClusterError, type Cluster } from './cluster.ts';
export { formatList, formatStatus, isProgrammed, isWaypoint } from './report.ts';
export { runWaypoint, type WaypointIo } from './run.ts';
