"""archgen.dataflow"""
