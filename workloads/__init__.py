"""archgen.workloads"""
