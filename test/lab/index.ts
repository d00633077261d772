// SPDX-License-Identifier: Apache-2.0
// The lab: a netns cluster on one machine. See lab.ts.
export { Lab, LabNode, LabPod, type ExecOptions, type ExecResult } from './lab.ts';
export { LabSpecError, planLab, LAB_CIDRS, LAB_PREFIX, type LabSpec, type NodeSpec, type PodSpec } from './plan.ts';
export { findLeftovers, sweepLeftovers, type Leftovers } from './registry.ts';
